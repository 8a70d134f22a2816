#!/usr/bin/env bash
# sagad end to end, smallest path, on the running local stack: a sagad with
# its own database and its own Kafka topics and group runs a two-step saga
# started over Kafka; this script plays the participant with kcat (reads each
# command, answers with the command's id as causationid). Checked: the saga
# ends completed in the database, the outbox is empty, the lifecycle events
# were published, a second start with the same id is a duplicate, a
# malformed message ends in dead_letters with its reason, /readyz and
# /metrics answer, and SIGTERM stops sagad with exit status 0.
# Needs SAGA_DATABASE_URL (a role that may create databases) and
# SAGA_KAFKA_BROKERS, as tests/run.sh exports them from the stack.
set -euo pipefail

SRC=${SAGA_SOURCE_DIR:?SAGA_SOURCE_DIR is not set}
SAGAD=${SAGA_BINARY_DIR:?SAGA_BINARY_DIR is not set}/orchestrator/sagad
: "${SAGA_DATABASE_URL:?SAGA_DATABASE_URL is not set: start the local stack (deploy/local/start.sh) and source its env file}"
: "${SAGA_KAFKA_BROKERS:?SAGA_KAFKA_BROKERS is not set: start the local stack and source its env file}"
BROKERS=$SAGA_KAFKA_BROKERS
ADMIN_URL=$SAGA_DATABASE_URL

RUN=smoke_$$_$RANDOM
DBNAME=sagad_$RUN
T=smoke.$RUN
WORK=$(mktemp -d /tmp/sagad-smoke.XXXXXX)
PID=""
SAGA_ID=order-$RUN

fail() {
    echo "FAIL: $*" >&2
    echo "--- sagad log (last 40 lines)" >&2
    tail -n 40 "$WORK/sagad.log" >&2 || true
    exit 1
}

cleanup() {
    if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
        kill -KILL "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    psql "$ADMIN_URL" -Xq -c "DROP DATABASE IF EXISTS \"$DBNAME\" WITH (FORCE)" >/dev/null 2>&1 || true
    [[ -n ${KEEP_WORK:-} ]] || rm -rf "$WORK"
}
trap cleanup EXIT

# The connection string of the server with another database name.
db_url() {
    local url=$1 name=$2
    if [[ $url == postgres*://* ]]; then
        local query="" rest=${url#*://}
        [[ $url == *\?* ]] && query="?${url#*\?}" && rest=${rest%%\?*}
        echo "${url%%://*}://${rest%%/*}/$name$query"
    else
        echo "$url dbname=$name"
    fi
}
DB_URL=$(db_url "$ADMIN_URL" "$DBNAME")
sql() { psql "$DB_URL" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds.
wait_for() {
    local secs=$1 what=$2 i
    shift 2
    for ((i = 0; i < secs * 10; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    fail "timed out after ${secs}s waiting for $what"
}

produce() { # produce TOPIC KEY JSON
    printf '%s\t%s\n' "$2" "$3" | timeout 20 kcat -b "$BROKERS" -P -t "$1" -K $'\t' -X message.timeout.ms=10000
}

# The Nth (1-based) message of the participant topic, once it is there.
nth_command() {
    timeout 20 kcat -b "$BROKERS" -C -t "$T.part" -o beginning -c "$1" -q -f '%s\n' 2>/dev/null |
        tail -n 1
}

reply_to() { # reply_to COMMAND_JSON RESULT_JSON
    local id step
    id=$(jq -r .id <<<"$1")
    step=$(jq -r .sagastep <<<"$1")
    [[ $(jq -r .sagaid <<<"$1") == "$SAGA_ID" ]] || fail "command for another saga: $1"
    [[ $(jq -r .replyto <<<"$1") == "kafka:$T.replies" ]] || fail "unexpected replyto in $1"
    produce "$T.replies" "$SAGA_ID" "$(jq -cn --arg id "reply-$id" --arg saga "$SAGA_ID" \
        --arg step "$step" --arg cause "$id" --argjson data "$2" \
        '{specversion: "1.0", id: $id, source: "/smoke", type: "saga.reply", sagaid: $saga,
          sagastep: $step, causationid: $cause, outcome: "success", data: $data}')"
}

[[ -x $SAGAD ]] || fail "no sagad at $SAGAD"
psql "$ADMIN_URL" -Xq -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$DBNAME\"" >/dev/null ||
    fail "cannot create database $DBNAME"
for topic in in replies events part; do
    # A metadata request for a topic creates it (auto creation).
    timeout 20 kcat -b "$BROKERS" -L -t "$T.$topic" >/dev/null 2>&1 || fail "cannot create topic $T.$topic"
done

mkdir -p "$WORK/sagas"
cp "$SRC"/sagas/*.json "$WORK/sagas/"
cat >"$WORK/sagas/smoke_pair.json" <<JSON
{ "name": "smoke_pair", "version": 1, "description": "Two steps on one Kafka topic.",
  "steps": [
    { "name": "reserve",
      "command": { "type": "smoke.reserve", "channel": "kafka:$T.part",
                   "data": { "item": "\$.input.item" } },
      "compensation": { "type": "smoke.release", "channel": "kafka:$T.part",
                        "data": { "reservation": "\$.steps.reserve.reservation" } } },
    { "name": "confirm",
      "command": { "type": "smoke.confirm", "channel": "kafka:$T.part",
                   "data": { "reservation": "\$.steps.reserve.reservation" } } } ] }
JSON
cat >"$WORK/sagad.json" <<JSON
{ "database_url": "$DB_URL", "sagas_dir": "$WORK/sagas",
  "kafka": { "brokers": "$BROKERS", "group_id": "$RUN" },
  "inputs": ["kafka:$T.in", "kafka:$T.replies"],
  "reply_to": { "kafka": "kafka:$T.replies" },
  "events": "kafka:$T.events",
  "http": { "listen": "127.0.0.1:0" },
  "log": { "format": "json", "level": "info" },
  "batch": { "max": 64, "wait": "2ms" } }
JSON

# The file says everything: no SAGA_* setting of the stack may override it.
env -u SAGA_DATABASE_URL -u SAGA_KAFKA_BROKERS -u SAGA_AMQP_URL \
    "$SAGAD" --config "$WORK/sagad.json" --migrations "$SRC/migrations" >"$WORK/sagad.log" 2>&1 &
PID=$!
wait_for 30 "sagad to be ready" grep -q '"sagad ready' "$WORK/sagad.log"
PORT=$(grep -o '"http listening on port [0-9]*' "$WORK/sagad.log" | grep -o '[0-9]*$')
[[ -n $PORT ]] || fail "no http port in the log"
wait_for 20 "/readyz to say ready" curl -sf "http://127.0.0.1:$PORT/readyz"
[[ $(curl -s "http://127.0.0.1:$PORT/healthz") == ok ]] || fail "/healthz is not ok"
echo "sagad ready on http port $PORT (database $DBNAME, topics $T.*)"

START=$(jq -cn --arg id "start-$RUN" --arg saga "$SAGA_ID" \
    '{specversion: "1.0", id: $id, source: "/smoke", type: "saga.start", sagatype: "smoke_pair",
      sagaid: $saga, data: {item: "book"}}')
produce "$T.in" "$SAGA_ID" "$START" || fail "cannot produce the start"

CMD1=$(nth_command 1)
[[ -n $CMD1 ]] || fail "no command for the first step"
[[ $(jq -r '.type + " " + .id + " " + .data.item' <<<"$CMD1") == "smoke.reserve $SAGA_ID/reserve/do/1 book" ]] ||
    fail "unexpected first command: $CMD1"
reply_to "$CMD1" '{"reservation": "r-42"}'

CMD2=$(nth_command 2)
[[ $(jq -r '.type + " " + .id + " " + .data.reservation' <<<"$CMD2") == "smoke.confirm $SAGA_ID/confirm/do/1 r-42" ]] ||
    fail "unexpected second command: $CMD2"
reply_to "$CMD2" '{}'

completed() { [[ $(sql "SELECT status FROM sagas WHERE id = '$SAGA_ID'") == completed ]]; }
wait_for 20 "the saga to complete" completed
outbox_empty() { [[ $(sql "SELECT count(*) FROM outbox") == 0 ]]; }
wait_for 20 "the outbox to be empty" outbox_empty
echo "saga $SAGA_ID completed, outbox empty"

EVENTS=$(timeout 20 kcat -b "$BROKERS" -C -t "$T.events" -o beginning -e -q -f '%s\n' 2>/dev/null |
    jq -r --arg saga "$SAGA_ID" 'select(.sagaid == $saga) | .type' | sort | tr '\n' ' ')
[[ $EVENTS == *saga.started* && $EVENTS == *saga.completed* ]] || fail "lifecycle events missing: $EVENTS"

VERSION=$(sql "SELECT version FROM sagas WHERE id = '$SAGA_ID'")
produce "$T.in" "$SAGA_ID" "$START" || fail "cannot produce the start again"
produce "$T.in" "junk" 'this is not a CloudEvent' || fail "cannot produce the malformed message"
dead_lettered() { [[ $(sql "SELECT count(*) FROM dead_letters WHERE reason LIKE 'not JSON%' AND channel = 'kafka:$T.in'") == 1 ]]; }
wait_for 20 "the malformed message in dead_letters" dead_lettered
[[ $(sql "SELECT convert_from(raw, 'UTF8') FROM dead_letters") == 'this is not a CloudEvent' ]] ||
    fail "the dead letter does not hold the message whole"
METRICS=$(curl -sf "http://127.0.0.1:$PORT/metrics") || fail "no /metrics"
grep -q '^sagad_duplicates_total{kind="[a-z]*"} 1' <<<"$METRICS" || fail "the second start is not counted as a duplicate"
[[ $(sql "SELECT version FROM sagas WHERE id = '$SAGA_ID'") == "$VERSION" ]] || fail "the duplicate start changed the saga"
grep -q '^sagad_sagas_finished_total{type="smoke_pair",status="completed"} 1' <<<"$METRICS" ||
    fail "no finished saga in /metrics"
grep -q '^sagad_dead_letters_total{reason="not_json"} 1' <<<"$METRICS" || fail "dead letter not counted"
echo "duplicate start ignored, malformed message dead-lettered"

kill -TERM "$PID"
RC=0
for _ in $(seq 150); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$PID" 2>/dev/null && fail "sagad still runs 15s after SIGTERM"
wait "$PID" || RC=$?
PID=""
[[ $RC == 0 ]] || fail "sagad exited with $RC after SIGTERM"
grep -q '"stopped"' "$WORK/sagad.log" || fail "no clean stop in the log"
echo "PASS: sagad ran a saga end to end and stopped cleanly"
