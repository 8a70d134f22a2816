#!/usr/bin/env bash
# saga.abort mid-saga, through Kafka and through RabbitMQ: the saga
# compensates from where it is, the step in flight included (its
# compensation goes out although no result came), then the steps before it
# in reverse order, and ends compensated with the reason in its history. An
# abort of a finished saga leaves it as it is.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init abort order_fulfillment

e2e_start_participant participant --rule 'payment.charge:silent:when=$.amount=9001'
e2e_start_sagad sagad

DATA='{"order_id":"o-{n}","customer_id":"c","amount":9001,"items":[]}'
e2e_send "$E2E_IN_KAFKA" --count 1 --sagatype order_fulfillment --prefix abort-k --data "$DATA"
e2e_send "$E2E_IN_AMQP" --count 1 --sagatype order_fulfillment --prefix abort-a --data "$DATA"
e2e_send "$E2E_IN_KAFKA" --count 1 --sagatype order_fulfillment --prefix done \
    --data '{"order_id":"o-done","customer_id":"c","amount":1,"items":[]}'
e2e_wait_sql "SELECT count(*) = 2 FROM participant_effects WHERE step = 'charge_payment' AND saga_id LIKE 'abort-%'" 60 "both charges in flight"
e2e_wait_sql "SELECT status = 'completed' FROM sagas WHERE id = 'done-1'" 60 "done-1 completed"

abort() { # abort SAGA_ID
    printf '{"specversion":"1.0","id":"abort-of-%s","source":"urn:test","type":"saga.abort","sagaid":"%s","data":{"reason":"customer cancelled %s"}}\n' "$1" "$1" "$1"
}
e2e_send "$E2E_IN_KAFKA" --lines <(abort abort-k-1; abort done-1)
e2e_send "$E2E_IN_AMQP" --lines <(abort abort-a-1)
e2e_wait_finished 3 60
e2e_wait_sql "SELECT count(*) = 3 FROM saga_history WHERE event = 'input.abort'" 30 "three aborts applied"
e2e_check_invariants

for s in abort-k-1 abort-a-1; do
    e2e_expect "$s status" "$(e2e_sql "SELECT status FROM sagas WHERE id = '$s'")" compensated
    e2e_expect "$s undone" "$(e2e_sql "SELECT string_agg(step, ' ' ORDER BY seq) FROM participant_effects WHERE saga_id = '$s' AND undo")" \
        "charge_payment reserve_inventory"
    e2e_expect "$s refund of the charge in flight" \
        "$(e2e_sql "SELECT data::text FROM participant_effects WHERE command_id = '$s/charge_payment/undo/1'")" '{"charge_id": null}'
    e2e_expect "$s never shipped" "$(e2e_sql "SELECT count(*) FROM participant_effects WHERE saga_id = '$s' AND step = 'ship_order'")" 0
    e2e_expect "$s reason in history" \
        "$(e2e_sql "SELECT count(*) > 0 FROM saga_history WHERE saga_id = '$s' AND detail::text LIKE '%customer cancelled $s%'")" t
done
e2e_expect "done-1 status" "$(e2e_sql "SELECT status FROM sagas WHERE id = 'done-1'")" completed
e2e_expect "done-1 nothing undone" "$(e2e_sql "SELECT count(*) FROM participant_effects WHERE saga_id = 'done-1' AND undo")" 0
e2e_expect "done-1 abort ignored" \
    "$(e2e_sql "SELECT count(*) FROM saga_history WHERE saga_id = 'done-1' AND event = 'input.abort' AND detail ? 'ignored'")" 1
e2e_figures
e2e_pass
