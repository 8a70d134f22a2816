#!/usr/bin/env bash
# The local stack scripts are idempotent and isolated: start.sh twice gives
# one running stack (the second start reuses it), its env file has the three
# connection URLs and they answer; stop.sh twice is fine. The test uses its
# own run dir and free ports, so it never touches the stack the test run
# itself uses. The restart commands of the env file bring PostgreSQL and
# RabbitMQ back.
set -euo pipefail

SRC=${SAGA_SOURCE_DIR:?SAGA_SOURCE_DIR is not set}
export SAGA_KAFKA_DEV_BROKER=${SAGA_BINARY_DIR:?SAGA_BINARY_DIR is not set}/tests/tools/kafka-dev-broker
# Unset what the outer stack exported, so nothing of it leaks in.
unset SAGA_DATABASE_URL SAGA_AMQP_URL SAGA_KAFKA_BROKERS SAGA_KAFKA_CONTROL \
      SAGA_PG_RESTART_CMD SAGA_AMQP_RESTART_CMD SAGA_AMQP_DIST_PORT SAGA_EPMD_PORT
export SAGA_RUN_DIR
SAGA_RUN_DIR=$(mktemp -d /tmp/saga-stack-test.XXXXXX)

busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A port p with p, p+10 and p+11 free (RabbitMQ uses the two above it).
free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 10000))
        busy "$p" || busy $((p + 10)) || busy $((p + 11)) || { echo "$p"; return 0; }
    done
    return 1
}
export SAGA_PG_PORT SAGA_AMQP_PORT
SAGA_PG_PORT=$(free_port)
SAGA_AMQP_PORT=$(free_port)
[[ $SAGA_PG_PORT != "$SAGA_AMQP_PORT" ]] || SAGA_AMQP_PORT=$((SAGA_AMQP_PORT + 20))

cleanup() {
    bash "$SRC/deploy/local/stop.sh" --purge >/dev/null 2>&1 || true
    rm -rf "$SAGA_RUN_DIR"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

echo "run dir $SAGA_RUN_DIR, postgresql $SAGA_PG_PORT, rabbitmq $SAGA_AMQP_PORT"
bash "$SRC/deploy/local/start.sh" >"$SAGA_RUN_DIR/start1.out" || fail "first start failed"
grep -q "127.0.0.1:$SAGA_PG_PORT" "$SAGA_RUN_DIR/start1.out" || fail "start.sh did not print the postgresql address"
grep -q "127.0.0.1:$SAGA_AMQP_PORT" "$SAGA_RUN_DIR/start1.out" || fail "start.sh did not print the rabbitmq address"
kafka_pid=$(cat "$SAGA_RUN_DIR/kafka.pid")

bash "$SRC/deploy/local/start.sh" >/dev/null 2>"$SAGA_RUN_DIR/start2.err" || fail "second start failed"
grep -q "postgresql already running" "$SAGA_RUN_DIR/start2.err" || fail "second start did not reuse postgresql"
grep -q "rabbitmq already running" "$SAGA_RUN_DIR/start2.err" || fail "second start did not reuse rabbitmq"
[[ $(cat "$SAGA_RUN_DIR/kafka.pid") == "$kafka_pid" ]] || fail "second start replaced the kafka broker"

# shellcheck disable=SC1091
source "$SAGA_RUN_DIR/env"
[[ $SAGA_DATABASE_URL == "postgresql://saga@127.0.0.1:$SAGA_PG_PORT/sagas" ]] || fail "SAGA_DATABASE_URL=$SAGA_DATABASE_URL"
[[ $SAGA_AMQP_URL == "amqp://guest:guest@127.0.0.1:$SAGA_AMQP_PORT/%2f" ]] || fail "SAGA_AMQP_URL=$SAGA_AMQP_URL"
[[ -n $SAGA_KAFKA_BROKERS && -p $SAGA_KAFKA_CONTROL ]] || fail "kafka settings missing"

[[ $(psql "$SAGA_DATABASE_URL" -XAtc 'SELECT rolsuper FROM pg_roles WHERE rolname = current_user') == t ]] ||
    fail "cannot query postgresql as superuser saga"
busy "$SAGA_AMQP_PORT" || fail "nothing listens on the amqp port"
timeout 30 kcat -b "$SAGA_KAFKA_BROKERS" -L -t saga.events | grep -q 'topic "saga.events" with 4 partitions' ||
    fail "kafka topic saga.events with 4 partitions not found"

eval "$SAGA_PG_RESTART_CMD immediate" || fail "pg restart failed"
[[ $(psql "$SAGA_DATABASE_URL" -XAtc 'SELECT 1') == 1 ]] || fail "postgresql not back after restart"

eval "$SAGA_AMQP_RESTART_CMD" || fail "rabbitmq restart failed"
busy "$SAGA_AMQP_PORT" || fail "rabbitmq not back after restart"

bash "$SRC/deploy/local/stop.sh" || fail "first stop failed"
busy "$SAGA_PG_PORT" && fail "postgresql still listens after stop"
busy "$SAGA_AMQP_PORT" && fail "rabbitmq still listens after stop"
kill -0 "$kafka_pid" 2>/dev/null && fail "kafka broker still runs after stop"
bash "$SRC/deploy/local/stop.sh" || fail "second stop failed"
echo "PASS"
