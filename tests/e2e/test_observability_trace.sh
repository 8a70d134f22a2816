#!/usr/bin/env bash
# W3C trace context end to end, over both brokers, with this script as the
# participant (kcat reads the Kafka commands, `participant dump` the
# RabbitMQ ones, replies go back with `participant send`). The greeting saga
# sends its first command over Kafka and its second over RabbitMQ.
# Checked: a saga started with a traceparent gets commands on both brokers
# that carry the same trace id with a span id of their own (none equal to
# the start's), and lifecycle events that carry the same trace id; a saga
# started without one gets a fresh valid trace, carried the same way; the
# JSON log lines of the steps carry the saga id, the saga type, the step and
# the trace id of the start message. On the way, the RabbitMQ command is
# first published before its queue exists: the broker returns it, sagad
# counts a publish failure, logs it with the saga id, and delivers it once
# the queue is there. At the end the saga left waiting shows in
# sagad_sagas_in_flight.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init obs-trace greeting

TRACE=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
SPAN=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
TP="00-$TRACE-$SPAN-01"
TP_RE='^00-[0-9a-f]{32}-[0-9a-f]{16}-01$'
GREETINGS=greetings.$E2E_ID
OUTBOX=greetings.outbox.$E2E_ID

e2e_start_sagad sagad '{"log": {"format": "json", "level": "debug"}}'
LOG=${E2E_LOG[sagad]}

# The RabbitMQ commands are read by a dump, which declares the queue.
dump_outbox() { # dump_outbox COUNT FILE
    "$PARTICIPANT" dump --amqp-queue "$OUTBOX" --count "$1" --idle-ms 60000 >"$2" 2>"$2.err" &
    E2E_PIDS+=("$!")
    DUMP_PID=$!
}

# kafka_command SAGA STEP: the command of that saga and step on the Kafka
# topic, once it is there.
kafka_command() {
    local cmd
    for _ in $(seq 100); do
        cmd=$(timeout 20 kcat -b "$SAGA_KAFKA_BROKERS" -C -t "$GREETINGS" -o beginning -e -q -f '%s\n' 2>/dev/null |
            jq -c --arg s "$1" --arg st "$2" 'select(.sagaid == $s and .sagastep == $st)' | head -n 1)
        [[ -n $cmd ]] && { echo "$cmd"; return 0; }
        sleep 0.3
    done
    e2e_fail "no $2 command of $1 on $GREETINGS"
}

# reply COMMAND RESULT: a success reply to COMMAND on its replyto channel.
reply() {
    local line
    line=$(jq -c --argjson r "$2" '{specversion: "1.0", id: ("reply-" + .id), source: "urn:test",
        type: "saga.reply", sagaid: .sagaid, sagastep: .sagastep, causationid: .id,
        outcome: "success", traceparent: .traceparent, data: $r}' <<<"$1")
    e2e_send "$(jq -r .replyto <<<"$1")" --lines <(echo "$line")
}

field() { jq -r "$2" <<<"$1"; }
trace_of() { local tp; tp=$(field "$1" .traceparent); echo "${tp:3:32}"; }
span_of() { local tp; tp=$(field "$1" .traceparent); echo "${tp:36:16}"; }
check_format() { [[ $(field "$1" .traceparent) =~ $TP_RE ]] || e2e_fail "$2: bad traceparent '$(field "$1" .traceparent)'"; }

# ---- a saga started with a traceparent ----
start=$(jq -cn --arg tp "$TP" '{specversion: "1.0", id: "start-1", source: "urn:test", type: "saga.start",
    sagatype: "greeting", sagaid: "traced", traceparent: $tp, data: {name: "Ada"}}')
e2e_send "$E2E_IN_KAFKA" --lines <(echo "$start")

compose=$(kafka_command traced compose)
check_format "$compose" "compose command"
e2e_expect "trace id of the kafka command" "$(trace_of "$compose")" "$TRACE"
[[ $(span_of "$compose") != "$SPAN" ]] || e2e_fail "the compose command reuses the start's span id"
reply "$compose" '{"draft_id": "d-1", "text": "Hello, Ada!"}'

# No queue yet: the deliver command comes back from the broker.
for _ in $(seq 100); do
    (($(e2e_metric sagad sagad_publish_failures_total 'transport="amqp"') >= 1)) && break
    sleep 0.2
done
(($(e2e_metric sagad sagad_publish_failures_total 'transport="amqp"') >= 1)) ||
    e2e_fail "no publish failure counted for a command to a queue that does not exist"
[[ -n $(jq -c --arg q "amqp:/$OUTBOX" 'select(.level == "warn" and .saga_id == "traced" and (.msg | startswith("publish to \u0027" + $q + "\u0027 failed")))' "$LOG") ]] ||
    e2e_fail "no log line of the failed publish with the saga id"
dump_outbox 1 "$E2E_WORK/outbox-1"

wait "$DUMP_PID" || { cat "$E2E_WORK/outbox-1.err" >&2; e2e_fail "no deliver command on $OUTBOX"; }
deliver=$(head -n 1 "$E2E_WORK/outbox-1")
e2e_expect "deliver command" "$(field "$deliver" '.sagaid + "/" + .sagastep')" "traced/deliver"
check_format "$deliver" "deliver command"
e2e_expect "trace id of the rabbitmq command" "$(trace_of "$deliver")" "$TRACE"
[[ $(span_of "$deliver") != "$SPAN" && $(span_of "$deliver") != "$(span_of "$compose")" ]] ||
    e2e_fail "the deliver command has no span id of its own: $(field "$deliver" .traceparent)"
e2e_log "commands: kafka $(field "$compose" .traceparent), rabbitmq $(field "$deliver" .traceparent)"
reply "$deliver" '{"sent": true}'
e2e_wait_sql "SELECT status = 'completed' FROM sagas WHERE id = 'traced'" 60 "saga traced completed"
e2e_expect "stored traceparent" "$(e2e_sql "SELECT traceparent FROM sagas WHERE id = 'traced'")" "$TP"

# ---- a saga started without one, over RabbitMQ ----
e2e_send "$E2E_IN_AMQP" --lines <(echo '{"specversion":"1.0","id":"start-2","source":"urn:test","type":"saga.start","sagatype":"greeting","sagaid":"untraced","data":{"name":"Bob"}}')
fresh=$(kafka_command untraced compose)
check_format "$fresh" "compose command of the untraced saga"
FRESH=$(trace_of "$fresh")
[[ $FRESH != "$TRACE" && $FRESH != 00000000000000000000000000000000 ]] ||
    e2e_fail "the untraced saga has no trace of its own: $FRESH"
e2e_expect "stored trace of the untraced saga" "$(e2e_sql "SELECT substr(traceparent, 4, 32) FROM sagas WHERE id = 'untraced'")" "$FRESH"

# ---- lifecycle events ----
e2e_wait_sql "SELECT count(*) = 0 FROM outbox" 30 "the outbox relayed"
timeout 60 kcat -b "$SAGA_KAFKA_BROKERS" -C -t "$E2E_EVENTS" -o beginning -e -q -f '%s\n' 2>/dev/null >"$E2E_WORK/events" ||
    e2e_fail "cannot read the events topic"
e2e_expect "events of the traced saga" \
    "$(jq -r 'select(.sagaid == "traced") | .type' "$E2E_WORK/events" | sort | tr '\n' ' ')" \
    "saga.completed saga.started saga.step.succeeded saga.step.succeeded "
e2e_expect "traces of its events" \
    "$(jq -r 'select(.sagaid == "traced") | .traceparent[3:35]' "$E2E_WORK/events" | sort -u)" "$TRACE"
e2e_expect "traces of the untraced saga's events" \
    "$(jq -r 'select(.sagaid == "untraced") | .traceparent[3:35]' "$E2E_WORK/events" | sort -u)" "$FRESH"

# The untraced saga waits for its compose reply: in flight (gauges are
# refreshed every 5 s).
for _ in $(seq 60); do
    [[ $(e2e_metric sagad sagad_sagas_in_flight 'type="greeting",status="running"') == 1 ]] && break
    sleep 0.25
done
e2e_expect "greetings in flight" "$(e2e_metric sagad sagad_sagas_in_flight 'type="greeting",status="running"')" 1

# ---- log lines ----
jq -e -c 'select((.time | type) != "string" or (.level | type) != "string" or (.msg | type) != "string")' \
    "$LOG" >"$E2E_WORK/bad-lines" 2>&1 && e2e_fail "log lines without time, level or msg: $(head -n 3 "$E2E_WORK/bad-lines")"
jq -c '.' "$LOG" >/dev/null 2>&1 || e2e_fail "a log line is not JSON"
step_line() { # step_line SAGA STEP TRACE: the first "step succeeded" line of that step
    jq -c --arg s "$1" --arg st "$2" --arg t "$3" \
        'select(.saga_id == $s and .saga_type == "greeting" and .step == $st and .trace_id == $t and .msg == "step succeeded")' \
        "$LOG" | head -n 1
}
for st in compose deliver; do
    line=$(step_line traced "$st" "$TRACE")
    [[ -n $line ]] || e2e_fail "no log line of step $st with the saga id and the start's trace id"
    e2e_log "log: $line"
done
[[ -n $(jq -c --arg t "$TRACE" 'select(.saga_id == "traced" and .msg == "saga running -> completed" and .trace_id == $t)' "$LOG") ]] ||
    e2e_fail "no log line of the traced saga's completion with its trace id"
[[ -n $(jq -c --arg t "$FRESH" 'select(.saga_id == "untraced" and .step == "compose" and .trace_id == $t)' "$LOG") ]] ||
    e2e_fail "no log line of the untraced saga's step with its fresh trace id"

e2e_stop sagad
e2e_pass
