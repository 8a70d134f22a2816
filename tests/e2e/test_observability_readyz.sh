#!/usr/bin/env bash
# /readyz follows the database: sagad runs against a PostgreSQL cluster of
# this test's own (initdb in a scratch folder, its own port), so that the
# test can stop it without touching anything shared. Checked: /readyz 200
# "ready" and sagad_ready 1 while the database is up; once it is stopped,
# /readyz 503 naming the database, sagad_ready 0, /healthz still 200 and
# sagad still running; once it is started again, /readyz 200 and
# sagad_ready 1, and a saga start sent over Kafka while the database was
# down is then applied (it waited, unacknowledged). sagad stops cleanly.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init obs-readyz greeting

PG_BIN=${SAGA_PG_BIN:-/usr/lib/postgresql/15/bin}
PG_DIR=$(mktemp -d /tmp/sagad-obs-pg.XXXXXX)
PG_PORT=$(e2e_free_port) || e2e_fail "no free port"

# initdb and the server refuse root: run them as postgres, from / (the
# current folder may be closed to that user).
as_pg() {
    if [[ $(id -u) == 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}
[[ $(id -u) == 0 ]] && chown postgres "$PG_DIR"

pg_start() {
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 \
        -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null ||
        e2e_fail "cannot start the test's PostgreSQL (log: $PG_DIR/postgres.log)"
}
pg_stop() {
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 60 stop >/dev/null ||
        e2e_fail "cannot stop the test's PostgreSQL"
}

# On exit: the cluster goes away with its folder, then the usual cleanup.
pg_cleanup() {
    if [[ -f $PG_DIR/data/postmaster.pid ]]; then
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    fi
    rm -rf "$PG_DIR"
}
trap 'rc=$?; pg_cleanup; (exit $rc); e2e_cleanup' EXIT

as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync \
    >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; e2e_fail "initdb failed"; }
pg_start
E2E_DB=postgresql://postgres@127.0.0.1:$PG_PORT/postgres
e2e_log "private PostgreSQL on port $PG_PORT"

e2e_start_sagad sagad
URL=http://127.0.0.1:$E2E_PORT_sagad

# probe PATH: "<status> <body>" of one GET.
probe() {
    local body code
    body=$(curl -s -o - -w '\n%{http_code}' "$URL$1") || true
    code=${body##*$'\n'}
    body=${body%$'\n'*}
    echo "$code ${body%$'\n'}"
}

# wait_readyz STATUS SECONDS
wait_readyz() {
    local end=$(($(date +%s) + $2))
    while (($(date +%s) < end)); do
        READY=$(probe /readyz)
        [[ ${READY%% *} == "$1" ]] && return 0
        kill -0 "${E2E_PID[sagad]}" 2>/dev/null || e2e_fail "sagad exited"
        sleep 0.2
    done
    e2e_fail "/readyz did not turn $1 within $2 s (last: $READY)"
}

wait_readyz 200 10
e2e_expect "/readyz while up" "$READY" "200 ready"
e2e_expect "sagad_ready while up" "$(e2e_metric sagad sagad_ready)" 1

pg_stop
e2e_log "PostgreSQL stopped"
wait_readyz 503 30
[[ $READY == "503 not ready: database: "* ]] || e2e_fail "/readyz does not name the database: $READY"
e2e_log "/readyz: $READY"
e2e_expect "/healthz while the database is down" "$(probe /healthz)" "200 ok"
e2e_expect "sagad_ready while down" "$(e2e_metric sagad sagad_ready)" 0

# A start sent now waits on its broker until the database is back.
e2e_send "$E2E_IN_KAFKA" --lines <(echo '{"specversion":"1.0","id":"while-down","source":"urn:test","type":"saga.start","sagatype":"greeting","data":{"name":"Patience"}}')
sleep 2
kill -0 "${E2E_PID[sagad]}" 2>/dev/null || e2e_fail "sagad exited while the database was down"
READY=$(probe /readyz)
e2e_expect "/readyz still" "${READY%% *}" 503

pg_start
e2e_log "PostgreSQL started again"
wait_readyz 200 30
e2e_expect "/readyz when back" "$READY" "200 ready"
e2e_expect "sagad_ready when back" "$(e2e_metric sagad sagad_ready)" 1
e2e_wait_sql "SELECT count(*) = 1 FROM sagas WHERE id = 'while-down'" 60 "the start sent while the database was down"

e2e_stop sagad
e2e_pass
