#!/usr/bin/env bash
# Every example saga (greeting, order_fulfillment, travel_booking) runs to
# completion when started through Kafka and through RabbitMQ: each step's
# command reaches its participant once, over the broker its channel names,
# with its template rendered from the input and earlier results; each saga
# ends completed with one saga.completed event; sagad stops cleanly on
# SIGTERM.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init happy

N=${E2E_HAPPY_PER_BROKER:-4}   # sagas of each type per broker
ORDER='{"order_id":"o-{n}","customer_id":"c-{n}","amount":{n}5,"items":[{"sku":"sku-{n}","qty":1}]}'
GREETING='{"name":"Friend {n}"}'
TRAVEL='{"traveller":{"name":"T{n}","email":"t{n}@example.com"},"from":"CDG","to":"LIS","depart_on":"2025-06-01","return_on":"2025-06-08","card_token":"tok-{n}"}'

e2e_start_participant participant
e2e_start_sagad sagad

for via in "$E2E_IN_KAFKA" "$E2E_IN_AMQP"; do
    tag=${via%%:*}
    e2e_send "$via" --count "$N" --sagatype order_fulfillment --prefix "order-$tag" --data "$ORDER"
    e2e_send "$via" --count "$N" --sagatype greeting --prefix "greet-$tag" --data "$GREETING"
    e2e_send "$via" --count "$N" --sagatype travel_booking --prefix "trip-$tag" --data "$TRAVEL"
done
TOTAL=$((6 * N))
e2e_wait_finished "$TOTAL" 90
e2e_expect "completed sagas" "$(e2e_sql "SELECT count(*) FROM sagas WHERE status = 'completed'")" "$TOTAL"
e2e_check_invariants

# Exactly one command per step and saga (5 + 2 + 6 steps), none undone.
e2e_expect "commands" "$(e2e_sql "SELECT count(*) FROM participant_effects")" $((2 * N * (5 + 2 + 6)))
e2e_expect "redelivered commands" "$(e2e_sql "SELECT count(*) FROM participant_effects WHERE attempts > 1 OR attempt > 1")" 0

# Commands went over both brokers, as the definitions name them.
e2e_expect "channels of order commands" \
    "$(e2e_sql "SELECT string_agg(DISTINCT split_part(channel, ':', 1), ',') FROM participant_effects WHERE saga_id LIKE 'order-%'")" "amqp,kafka"
e2e_expect "fraud checks over rabbitmq" \
    "$(e2e_sql "SELECT count(*) FROM participant_effects WHERE step = 'fraud_check' AND channel = 'amqp:/fraud.commands.$E2E_ID'")" $((2 * N))
e2e_expect "charges through the payments exchange" \
    "$(e2e_sql "SELECT count(*) FROM participant_effects WHERE type = 'payment.charge' AND channel = 'amqp:/payments.$E2E_ID.charge'")" $((2 * N))

# Templates: inputs, earlier results, literal dollars.
e2e_expect "hotel data from the flight's result" \
    "$(e2e_sql "SELECT data->>'arrival_flight' || ' ' || (data->>'trip_id') FROM participant_effects WHERE command_id = 'trip-kafka-1/book_hotel/do/1'")" \
    "SG101 trip-kafka-1"
e2e_expect "car note" "$(e2e_sql "SELECT data->>'note' FROM participant_effects WHERE command_id = 'trip-amqp-2/rent_car/do/1'")" \
    '$ prices in local currency'
e2e_expect "charge items" "$(e2e_sql "SELECT data->'items'->1->>'ref' FROM participant_effects WHERE command_id = 'trip-amqp-1/charge_card/do/1'")" \
    "htl-trip-amqp-1"
e2e_expect "greeting text" "$(e2e_sql "SELECT data->>'text' FROM participant_effects WHERE command_id = 'greet-kafka-3/deliver/do/1'")" \
    "Hello, Friend 3!"

# The saga as sagactl shows it.
"$SAGACTL" --db "$E2E_DB" show --json order-amqp-2 >"$E2E_WORK/show.json" || e2e_fail "sagactl show failed"
e2e_expect "shown status" "$(jq -r .status "$E2E_WORK/show.json")" completed
e2e_expect "shown steps" "$(jq -r '[.steps[] | .name + "=" + .status] | join(" ")' "$E2E_WORK/show.json")" \
    "reserve_inventory=succeeded fraud_check=succeeded credit_check=succeeded charge_payment=succeeded ship_order=succeeded"

# Lifecycle events: one saga.completed per saga.
timeout 60 kcat -b "$SAGA_KAFKA_BROKERS" -C -t "$E2E_EVENTS" -e -f '%s\n' 2>/dev/null >"$E2E_WORK/events" ||
    e2e_fail "cannot read the events topic"
e2e_expect "saga.completed events" "$(jq -r 'select(.type == "saga.completed") | .sagaid' "$E2E_WORK/events" | sort -u | wc -l)" "$TOTAL"
e2e_expect "saga.started events" "$(jq -r 'select(.type == "saga.started") | .sagaid' "$E2E_WORK/events" | sort -u | wc -l)" "$TOTAL"

e2e_figures
e2e_stop sagad
e2e_stop participant
e2e_pass
