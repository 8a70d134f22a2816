#!/usr/bin/env bash
# start.sh: starts this run dir's PostgreSQL 15, RabbitMQ and Kafka dev broker
# on loopback, reusing whatever of them already runs, then writes
# $SAGA_RUN_DIR/env (export lines: SAGA_DATABASE_URL, SAGA_KAFKA_BROKERS,
# SAGA_AMQP_URL, SAGA_KAFKA_CONTROL, SAGA_PG_RESTART_CMD,
# SAGA_AMQP_RESTART_CMD, SAGA_RUN_DIR) and prints where each service listens.
# Settings: see common.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KAFKA_TOPICS=(saga.commands:4 saga.replies:4 saga.events:4)
KAFKA_BROKERS=${SAGA_KAFKA_BROKER_COUNT:-3}

start_pg() {
    if pg_running; then
        log "postgresql already running on 127.0.0.1:$PG_PORT"
        return
    fi
    port_busy "$PG_PORT" && die "port $PG_PORT is taken by another program (set SAGA_PG_PORT)"
    mkdir -p "$PG_BASE"
    [[ $(id -u) == 0 ]] && chown postgres: "$PG_BASE"
    chmod 700 "$PG_BASE"
    if [[ ! -f $PG_DATA/PG_VERSION ]]; then
        log "initdb $PG_DATA"
        as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
            -A trust >"$PG_BASE/initdb.log" 2>&1 || { cat "$PG_BASE/initdb.log" >&2; die "initdb failed"; }
        as_pg tee "$PG_DATA/pg_hba.conf" >/dev/null <<HBA
# private test cluster: trust, loopback and its own socket folder only
local all         all              trust
host  all         all 127.0.0.1/32 trust
local replication all              trust
host  replication all 127.0.0.1/32 trust
HBA
        as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PG_BASE'
max_connections = 200
log_min_messages = warning
CONF
    fi
    # The port is given on the command line so a restart keeps it
    # (pg_ctl restart reuses postmaster.opts).
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 -o "-p $PG_PORT" start >/dev/null ||
        { tail -n 20 "$PG_LOG" >&2 || true; die "postgresql did not start, see $PG_LOG"; }
    pg_psql <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'saga') THEN
    CREATE ROLE saga LOGIN SUPERUSER;
  END IF;
END $$;
SQL
    if [[ -z $(pg_psql -tAc "SELECT 1 FROM pg_database WHERE datname = 'sagas'") ]]; then
        pg_psql -c "CREATE DATABASE sagas OWNER saga"
    fi
    log "postgresql started on 127.0.0.1:$PG_PORT"
}

start_rabbitmq() {
    if rmq_running; then
        log "rabbitmq already running on 127.0.0.1:$AMQP_PORT (node $RMQ_NODE)"
        return
    fi
    rmq_stop   # a node that half-runs or an orphan epmd of this stack
    port_busy "$AMQP_PORT" && die "port $AMQP_PORT is taken by another program (set SAGA_AMQP_PORT)"
    port_busy "$AMQP_DIST_PORT" && die "port $AMQP_DIST_PORT is taken (set SAGA_AMQP_DIST_PORT)"
    port_busy "$EPMD_PORT" && die "port $EPMD_PORT is taken (set SAGA_EPMD_PORT)"
    log "starting rabbitmq node $RMQ_NODE"
    rmq_start
    log "rabbitmq started on 127.0.0.1:$AMQP_PORT"
}

start_kafka() {
    local bin args=() t i
    if kafka_running; then
        log "kafka dev broker already running at $(cat "$KAFKA_BOOTSTRAP")"
        return
    fi
    bin=$(kafka_binary)
    rm -f "$KAFKA_BOOTSTRAP"
    for t in "${KAFKA_TOPICS[@]}"; do args+=(--topic "$t"); done
    setsid "$bin" --brokers "$KAFKA_BROKERS" "${args[@]}" --bootstrap-file "$KAFKA_BOOTSTRAP" \
        --control "$KAFKA_CONTROL" </dev/null >"$KAFKA_LOG" 2>&1 &
    echo $! >"$KAFKA_PID"
    for ((i = 0; i < 100; i++)); do
        [[ -s $KAFKA_BOOTSTRAP ]] && break
        kafka_pid >/dev/null || { cat "$KAFKA_LOG" >&2; die "kafka dev broker exited"; }
        sleep 0.1
    done
    [[ -s $KAFKA_BOOTSTRAP ]] || die "kafka dev broker wrote no bootstrap file, see $KAFKA_LOG"
    log "kafka dev broker started at $(cat "$KAFKA_BOOTSTRAP")"
}

write_env() {
    local here restart_prefix
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    restart_prefix="SAGA_RUN_DIR=$(shq "$SAGA_RUN_DIR") bash"
    {
        echo "# local stack of $SAGA_RUN_DIR, written by deploy/local/start.sh"
        echo "export SAGA_RUN_DIR=$(shq "$SAGA_RUN_DIR")"
        echo "export SAGA_DATABASE_URL=$(shq "postgresql://saga@127.0.0.1:$PG_PORT/sagas")"
        echo "export SAGA_KAFKA_BROKERS=$(shq "$(tr -d '\n' <"$KAFKA_BOOTSTRAP")")"
        echo "export SAGA_AMQP_URL=$(shq "amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f")"
        echo "export SAGA_KAFKA_CONTROL=$(shq "$KAFKA_CONTROL")"
        echo "export SAGA_PG_RESTART_CMD=$(shq "$restart_prefix $(shq "$here/pg-restart.sh")")"
        echo "export SAGA_AMQP_RESTART_CMD=$(shq "$restart_prefix $(shq "$here/rabbitmq-restart.sh")")"
        echo "export SAGA_PG_PORT=$(shq "$PG_PORT")"
        echo "export SAGA_PG_SOCKET_DIR=$(shq "$PG_BASE")"
        echo "export SAGA_AMQP_PORT=$(shq "$AMQP_PORT")"
    } >"$ENV_FILE.tmp"
    mv "$ENV_FILE.tmp" "$ENV_FILE"
}

# A stack that runs keeps its ports; a stopped one takes them from the
# environment again.
choose_ports() {
    load_ports
    if ! pg_running && ! rmq_running && ! kafka_running; then
        env_ports
    fi
    save_ports
}

main() {
    choose_ports
    start_pg
    start_rabbitmq
    start_kafka
    write_env
    ln -sfn "$PG_BASE" "$SAGA_RUN_DIR/postgresql"
    cat <<INFO
Local stack ($SAGA_RUN_DIR):
  PostgreSQL 15  127.0.0.1:$PG_PORT  (socket dir $PG_BASE)  $(printf '%s' "postgresql://saga@127.0.0.1:$PG_PORT/sagas")
  RabbitMQ       127.0.0.1:$AMQP_PORT  (node $RMQ_NODE)  amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f
  Kafka (dev)    $(tr -d '\n' <"$KAFKA_BOOTSTRAP")  ($KAFKA_BROKERS brokers, control FIFO $KAFKA_CONTROL)
Environment:     source $ENV_FILE
Stop:            SAGA_RUN_DIR=$SAGA_RUN_DIR $SAGA_REPO/deploy/local/stop.sh
INFO
}

main "$@"
