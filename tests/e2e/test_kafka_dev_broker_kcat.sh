#!/usr/bin/env bash
# The Kafka dev broker serves other processes as a real cluster does: kcat
# produces N messages and reads all N back through a consumer group; after
# "down all" on the control FIFO a produce fails, after "up all" it works
# again. The test runs its own broker and stops it even when it fails.
set -euo pipefail

BROKER=${SAGA_BINARY_DIR:?SAGA_BINARY_DIR is not set}/tests/tools/kafka-dev-broker
N=50
TOPIC=e2e.kcat
WORK=$(mktemp -d)
PID=""

cleanup() {
    if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID"
        wait "$PID" || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    echo "--- broker log" >&2
    cat "$WORK/broker.log" >&2 || true
    exit 1
}

# control LINE: writes one line to the FIFO and waits for the broker to log it.
control() {
    timeout 10 bash -c 'printf "%s\n" "$1" >"$2"' _ "$1" "$WORK/control" || fail "cannot write '$1' to the fifo"
    for _ in $(seq 100); do
        grep -qxF "kafka-dev-broker: applied: $1" "$WORK/broker.log" && return 0
        sleep 0.1
    done
    fail "broker did not apply '$1'"
}

produce() { # produce FIRST LAST [extra kcat args...]
    local first=$1 last=$2
    shift 2
    seq "$first" "$last" | sed 's/^/key-&:value-/' |
        timeout 60 kcat -b "$BOOTSTRAP" -P -t "$TOPIC" -K: -X message.timeout.ms=5000 "$@"
}

[[ -x $BROKER ]] || fail "no broker program at $BROKER"
"$BROKER" --brokers 3 --topic "$TOPIC:4" --bootstrap-file "$WORK/bootstrap" \
    --control "$WORK/control" >"$WORK/broker.out" 2>"$WORK/broker.log" &
PID=$!
for _ in $(seq 100); do [[ -s $WORK/bootstrap ]] && break; sleep 0.1; done
[[ -s $WORK/bootstrap ]] || fail "no bootstrap file"
BOOTSTRAP=$(cat "$WORK/bootstrap")
echo "broker at $BOOTSTRAP"

produce 1 "$N" || fail "produce of $N messages failed"
timeout 90 kcat -b "$BOOTSTRAP" -G e2e-group -X auto.offset.reset=earliest -c "$N" \
    -f '%s\n' "$TOPIC" >"$WORK/consumed" 2>"$WORK/consumer.log" || {
    cat "$WORK/consumer.log" >&2
    fail "group consumer did not get $N messages"
}
sort "$WORK/consumed" >"$WORK/got"
seq 1 "$N" | sed 's/^/value-/' | sort >"$WORK/want"
diff "$WORK/want" "$WORK/got" || fail "consumed messages differ from produced ones"
echo "consumed all $N messages through a consumer group"

control "down all"
if produce 1001 1001 -X socket.connection.setup.timeout.ms=1000 2>"$WORK/down.log"; then
    fail "produce succeeded while every broker was down"
fi
echo "produce failed while down: $(grep -m1 -o 'ERROR.*' "$WORK/down.log" || true)"

control "up all"
produce 2001 2001 || fail "produce failed after 'up all'"
echo "produce works again after up"

# A bad control line is reported and the broker keeps serving.
control "rtt 1 5"
timeout 10 bash -c 'printf "bogus line\n" >"$1"' _ "$WORK/control"
for _ in $(seq 50); do grep -q "bad control line 'bogus line'" "$WORK/broker.log" && break; sleep 0.1; done
grep -q "bad control line 'bogus line'" "$WORK/broker.log" || fail "bad line not reported"
kill -0 "$PID" || fail "broker died on a bad control line"

kill -TERM "$PID"
wait "$PID" || fail "broker did not exit cleanly on SIGTERM"
PID=""
[[ ! -e $WORK/bootstrap ]] || fail "bootstrap file left after exit"
echo "PASS"
