#!/usr/bin/env bash
# sagad's /metrics during and after a run: every scrape passes
# `promtool check metrics`, and the counters match the sagas that were run.
# Run: 4 orders through Kafka that complete, 2 through RabbitMQ whose charge
# fails (not retryable: the inventory is released, the saga compensated), 4
# greetings that complete, each compose reply sent twice (same event id), a
# start sent again (same event id) and another start of the same saga id, a
# message that is not JSON and a start of an unknown saga type. Checked: sagas started by type, finished by type and
# status, step outcomes, compensations, step latency observations (one per
# step settled by a reply), dead letters by reason, duplicates by kind,
# messages published (= commands the participant received + lifecycle
# events on the events topic), batch and transaction histograms, no version
# conflicts; once idle, the gauges: outbox and timers empty, nothing in
# flight, ready, and the Kafka consumer lag of the input topics at 0.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init obs-metrics order_fulfillment greeting

command -v promtool >/dev/null || e2e_fail "promtool not found (Debian package prometheus)"

# Replies come a little late, so that a scrape sees sagas in flight.
e2e_start_participant participant --rule 'payment.charge:fail:when=$.amount>1000' \
    --rule 'greeting.compose:succeed:delay=150ms,repeat=2' --rule '*:succeed:delay=150ms'
e2e_start_sagad sagad
PORT=$E2E_PORT_sagad

# scrape NAME: saves /metrics as $E2E_WORK/NAME.prom and lints it.
scrape() {
    local file=$E2E_WORK/$1.prom
    curl -sf "http://127.0.0.1:$PORT/metrics" >"$file" || e2e_fail "cannot scrape /metrics"
    promtool check metrics <"$file" >"$E2E_WORK/$1.promtool" 2>&1 ||
        { cat "$E2E_WORK/$1.promtool" >&2; e2e_fail "promtool check metrics refused the $1 scrape"; }
}

# m NAME METRIC [LABELS]: the value of the series of METRIC in scrape NAME
# whose label set is exactly LABELS ('type="x",status="y"', in the order
# sagad renders them); 0 when absent.
m() {
    local sel=$2
    [[ -n ${3:-} ]] && sel="$2{$3}"
    awk -v s="$sel" '$1 == s { v = $2 } END { printf "%s\n", v == "" ? 0 : v + 0 }' "$E2E_WORK/$1.prom"
}

# msum NAME METRIC FILTER: the sum of every series of METRIC whose labels
# contain FILTER.
msum() {
    awk -v m="$2" -v f="${3:-}" '$1 ~ "^"m"({|$)" && index($1, f) { s += $2 } END { printf "%d\n", s }' \
        "$E2E_WORK/$1.prom"
}

ORDER='{"order_id":"o-{n}","customer_id":"c-{n}","amount":{n}5,"items":[{"sku":"sku-{n}","qty":1}]}'
BIG_ORDER='{"order_id":"big-{n}","customer_id":"c-{n}","amount":500{n},"items":[{"sku":"sku-{n}","qty":9}]}'
e2e_send "$E2E_IN_KAFKA" --count 4 --sagatype order_fulfillment --prefix order-ok --data "$ORDER"
e2e_send "$E2E_IN_AMQP" --count 2 --sagatype order_fulfillment --prefix order-big --data "$BIG_ORDER"
e2e_send "$E2E_IN_KAFKA" --count 3 --sagatype greeting --prefix greet --data '{"name":"Friend {n}"}'
start='{"specversion":"1.0","id":"dup-1","source":"urn:test","type":"saga.start","sagatype":"greeting","sagaid":"greet-dup","data":{"name":"Dup"}}'
again='{"specversion":"1.0","id":"dup-2","source":"urn:test","type":"saga.start","sagatype":"greeting","sagaid":"greet-dup","data":{"name":"Dup"}}'
e2e_send "$E2E_IN_KAFKA" --lines <(echo "$start")
e2e_wait_sql "SELECT count(*) = 1 FROM sagas WHERE id = 'greet-dup'" 30 "saga greet-dup started"
e2e_send "$E2E_IN_KAFKA" --lines <(echo "$start"; echo "$again")
e2e_send "$E2E_IN_AMQP" --lines <(echo 'this is not json {'
    echo '{"specversion":"1.0","id":"nosuch-1","source":"urn:test","type":"saga.start","sagatype":"no_such_saga","data":{}}')

# A scrape while sagas run.
e2e_wait_sql "SELECT count(*) >= 6 FROM sagas" 60 "the orders taken in"
scrape during
e2e_log "scrape during the run passes promtool ($(grep -c '^sagad_' "$E2E_WORK/during.prom") samples)"

SAGAS=10
e2e_wait_finished "$SAGAS" 120
e2e_check_invariants
e2e_expect "final statuses" \
    "$(e2e_sql "SELECT string_agg(type || ':' || status || '=' || n, ' ' ORDER BY type, status) FROM (SELECT type, status, count(*) n FROM sagas GROUP BY 1, 2) x")" \
    "greeting:completed=4 order_fulfillment:compensated=2 order_fulfillment:completed=4"

# The counters follow the commits at once; the gauges every few seconds,
# the consumer lag after librdkafka's next statistics.
for _ in $(seq 100); do
    scrape final
    [[ $(m final sagad_duplicates_total 'kind="start"') == 2 && $(msum final sagad_dead_letters_total) == 2 &&
        $(m final sagad_outbox_pending) == 0 && $(msum final sagad_sagas_in_flight) == 0 &&
        $(grep -c "^sagad_kafka_consumer_lag{topic=\"${E2E_IN_KAFKA#kafka:}\"" "$E2E_WORK/final.prom") -gt 0 &&
        $(msum final sagad_kafka_consumer_lag) == 0 ]] && break
    sleep 0.3
done
e2e_log "final scrape passes promtool"

# Sagas.
e2e_expect "started orders" "$(m final sagad_sagas_started_total 'type="order_fulfillment"')" 6
e2e_expect "started greetings" "$(m final sagad_sagas_started_total 'type="greeting"')" 4
e2e_expect "completed orders" "$(m final sagad_sagas_finished_total 'type="order_fulfillment",status="completed"')" 4
e2e_expect "compensated orders" "$(m final sagad_sagas_finished_total 'type="order_fulfillment",status="compensated"')" 2
e2e_expect "failed orders" "$(m final sagad_sagas_finished_total 'type="order_fulfillment",status="failed"')" 0
e2e_expect "completed greetings" "$(m final sagad_sagas_finished_total 'type="greeting",status="completed"')" 4

# Steps and compensations.
of='type="order_fulfillment"'
e2e_expect "reserve_inventory succeeded" "$(m final sagad_steps_total "$of,step=\"reserve_inventory\",outcome=\"succeeded\"")" 6
e2e_expect "fraud_check succeeded" "$(m final sagad_steps_total "$of,step=\"fraud_check\",outcome=\"succeeded\"")" 6
e2e_expect "credit_check succeeded" "$(m final sagad_steps_total "$of,step=\"credit_check\",outcome=\"succeeded\"")" 6
e2e_expect "charge_payment succeeded" "$(m final sagad_steps_total "$of,step=\"charge_payment\",outcome=\"succeeded\"")" 4
e2e_expect "charge_payment failed" "$(m final sagad_steps_total "$of,step=\"charge_payment\",outcome=\"failed\"")" 2
e2e_expect "ship_order succeeded" "$(m final sagad_steps_total "$of,step=\"ship_order\",outcome=\"succeeded\"")" 4
e2e_expect "greeting steps" "$(msum final sagad_steps_total 'type="greeting"')" 8
e2e_expect "order step outcomes" "$(msum final sagad_steps_total "$of")" 28
e2e_expect "inventory released" "$(m final sagad_compensations_total "$of,step=\"reserve_inventory\",outcome=\"compensated\"")" 2
e2e_expect "compensations" "$(msum final sagad_compensations_total)" 2
e2e_expect "releases the participant received" \
    "$(e2e_sql "SELECT count(*) FROM participant_effects WHERE undo AND outcome = 'success'")" 2

# One latency observation per step settled by a reply.
e2e_expect "order step latencies" "$(m final sagad_step_latency_seconds_count "$of")" 28
e2e_expect "greeting step latencies" "$(m final sagad_step_latency_seconds_count 'type="greeting"')" 8
e2e_expect "latencies under +Inf" "$(m final sagad_step_latency_seconds_bucket "$of,le=\"+Inf\"")" 28
awk -v c="$(m final sagad_step_latency_seconds_sum "$of")" 'BEGIN { exit !(c >= 28 * 0.15) }' ||
    e2e_fail "order step latencies sum to less than 28 replies delayed by 150 ms"

# One observation per applied reply that caused a command: per completed
# order 3 (reserve -> the checks, the later check -> charge, charge ->
# ship), per compensated one 3 (the last of them: charge failed -> release),
# per greeting 1.
e2e_expect "replies that caused a command" "$(m final sagad_reply_to_command_seconds_count)" 22
e2e_expect "reply to command under +Inf" "$(m final sagad_reply_to_command_seconds_bucket 'le="+Inf"')" 22

# Rejects and duplicates.
e2e_expect "not JSON" "$(m final sagad_dead_letters_total 'reason="not_json"')" 1
e2e_expect "unknown sagatype" "$(m final sagad_dead_letters_total 'reason="unknown_sagatype"')" 1
e2e_expect "dead letters stored" "$(e2e_sql "SELECT count(*) FROM dead_letters")" 2
# A start of an existing saga id counts as kind "start", its own redelivery
# included; a reply seen before as kind "message".
e2e_expect "duplicate replies" "$(m final sagad_duplicates_total 'kind="message"')" 4
e2e_expect "duplicate starts" "$(m final sagad_duplicates_total 'kind="start"')" 2
e2e_expect "version conflicts (one sagad)" "$(m final sagad_version_conflicts_total)" 0

# Publishing: every command and every lifecycle event, once.
timeout 60 kcat -b "$SAGA_KAFKA_BROKERS" -C -t "$E2E_EVENTS" -e -q -f '%s\n' 2>/dev/null >"$E2E_WORK/events" ||
    e2e_fail "cannot read the events topic"
events=$(grep -c . "$E2E_WORK/events")
commands=$(e2e_sql "SELECT count(*) FROM participant_effects")
amqp_commands=$(e2e_sql "SELECT count(*) FROM participant_effects WHERE channel LIKE 'amqp:%'")
e2e_expect "published over rabbitmq" "$(m final sagad_messages_published_total 'transport="amqp"')" "$amqp_commands"
e2e_expect "published over kafka" "$(m final sagad_messages_published_total 'transport="kafka"')" \
    $((commands - amqp_commands + events))
e2e_expect "publish failures" "$(msum final sagad_publish_failures_total)" 0
consumed=$(msum final sagad_messages_consumed_total)
((consumed >= SAGAS + 4 + commands + 4)) ||
    e2e_fail "sagad consumed $consumed messages, fewer than the starts, rejects and replies sent"

# Transactions.
transitions=$(m final sagad_transitions_total)
((transitions >= SAGAS + commands)) || e2e_fail "only $transitions transitions for $SAGAS starts and $commands replies"
batches=$(m final sagad_batch_size_count)
((batches >= 1 && $(m final sagad_batch_size_sum) >= transitions)) ||
    e2e_fail "batch sizes ($batches batches) do not account for $transitions transitions"
(($(m final sagad_db_transaction_seconds_count) >= batches)) || e2e_fail "fewer transactions timed than batches"

# Gauges once idle.
e2e_expect "outbox pending" "$(m final sagad_outbox_pending)" 0
e2e_expect "timers pending" "$(m final sagad_timers_pending)" 0
e2e_expect "in flight" "$(msum final sagad_sagas_in_flight)" 0
e2e_expect "ready" "$(m final sagad_ready)" 1
grep -q "^sagad_kafka_consumer_lag{topic=\"${E2E_IN_KAFKA#kafka:}\",partition=\"[0-9]*\"} 0$" "$E2E_WORK/final.prom" ||
    e2e_fail "no consumer lag of the input topic at 0"
e2e_log "consumer lag: $(grep -c '^sagad_kafka_consumer_lag{' "$E2E_WORK/final.prom") partition(s) reported"

e2e_figures
e2e_stop sagad
e2e_stop participant
e2e_pass
