#!/usr/bin/env bash
# Three sagad processes share one database, one Kafka consumer group and
# the RabbitMQ queues, and run E2E_SCALE_SAGAS order sagas between them
# (default 2000: half started through Kafka, half through RabbitMQ; one in
# ten has its charge refused and compensates). Every saga finishes as
# planned, every command reaches the participant once and every effect is
# there exactly once: the participant's effects are counted exactly, no
# step took effect twice, every command belongs to a saga that finished,
# and each sagad did part of the work.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init three order_fulfillment

N=${E2E_SCALE_SAGAS:-2000}
TIMEOUT=${E2E_SCALE_TIMEOUT:-300}
((N % 20 == 0)) || e2e_fail "E2E_SCALE_SAGAS must be a multiple of 20"
HALF=$((N / 2))
FAILING=$((HALF / 10))   # per broker
GOOD=$((HALF - FAILING))

# Timeouts far above any latency of a loaded machine: a timeout would send
# a command again and this test counts commands exactly.
jq '.defaults.timeout = "120s" | .steps[0].timeout = "120s" | .timeout = "30m"' \
    "$E2E_WORK/sagas/order_fulfillment.json" >"$E2E_WORK/of.json" &&
    mv "$E2E_WORK/of.json" "$E2E_WORK/sagas/order_fulfillment.json"

e2e_start_participant participant --rule 'payment.charge:fail:when=$.amount=4444'
for i in 1 2 3; do e2e_start_sagad "sagad$i"; done
# 2 input topics of 4 partitions
e2e_wait_kafka_group 8 sagad1 sagad2 sagad3

t0=$(date +%s%3N)
for via in "$E2E_IN_KAFKA" "$E2E_IN_AMQP"; do
    tag=${via%%:*}
    e2e_send "$via" --count "$GOOD" --sagatype order_fulfillment --prefix "$tag" \
        --data '{"order_id":"o-{n}","customer_id":"c-{n}","amount":{n},"items":[{"sku":"s","qty":1}]}'
    e2e_send "$via" --count "$FAILING" --sagatype order_fulfillment --prefix "$tag-refused" \
        --data '{"order_id":"o-{n}","customer_id":"c-{n}","amount":4444,"items":[]}'
done
t1=$(date +%s%3N)
e2e_log "sent $N starts in $((t1 - t0)) ms"
e2e_wait_finished "$N" "$TIMEOUT"
t2=$(date +%s%3N)
secs=$(( (t2 - t0) / 1000 ))
e2e_log "$N sagas finished $((t2 - t0)) ms after the first start ($(( N * 1000 / (t2 - t0) )) sagas/s)"
e2e_check_invariants

COMPLETED=$((2 * GOOD))
COMPENSATED=$((2 * FAILING))
e2e_expect "completed" "$(e2e_sql "SELECT count(*) FROM sagas WHERE status = 'completed'")" "$COMPLETED"
e2e_expect "compensated" "$(e2e_sql "SELECT count(*) FROM sagas WHERE status = 'compensated'")" "$COMPENSATED"
e2e_expect "refused sagas are the compensated ones" \
    "$(e2e_sql "SELECT count(*) FROM sagas WHERE status = 'compensated' AND id LIKE '%-refused-%'")" "$COMPENSATED"
# completed: reserve, fraud, credit, charge, ship; compensated: reserve,
# fraud, credit, charge (refused), release
e2e_expect "commands" "$(e2e_sql "SELECT count(*) FROM participant_effects")" $((5 * N))
e2e_expect "effects" "$(e2e_sql "SELECT count(*) FROM participant_effects WHERE outcome = 'success'")" $((5 * COMPLETED + 4 * COMPENSATED))
e2e_expect "commands per saga" "$(e2e_sql "SELECT string_agg(DISTINCT n::text, ',') FROM (SELECT count(*) n FROM participant_effects GROUP BY saga_id) x")" 5
e2e_expect "commands of unfinished sagas" \
    "$(e2e_sql "SELECT count(*) FROM participant_effects e JOIN sagas s ON s.id = e.saga_id WHERE s.status NOT IN ('completed', 'compensated')")" 0
e2e_expect "retried attempts" "$(e2e_sql "SELECT count(*) FROM participant_effects WHERE attempt > 1")" 0
redelivered=$(e2e_sql "SELECT count(*) FROM participant_effects WHERE attempts > 1")
e2e_log "commands delivered more than once to the participant (deduplicated by id): $redelivered"

for i in 1 2 3; do
    c=$(e2e_metric "sagad$i" sagad_transitions_total)
    e2e_log "sagad$i committed $c transitions"
    ((c > 0)) || e2e_fail "sagad$i did no work"
done
for i in 1 2 3; do
    port_var=E2E_PORT_sagad$i
    curl -s "http://127.0.0.1:${!port_var}/metrics" >"$E2E_WORK/metrics-sagad$i.txt"
done
e2e_figures
for i in 1 2 3; do e2e_stop "sagad$i"; done
e2e_pass
