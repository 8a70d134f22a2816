#!/usr/bin/env bash
# A retryable failure is retried with backoff: a charge that fails twice
# (retryable) succeeds on its third attempt and the saga completes, each
# attempt a command of its own (ids .../do/1, /2, /3) and the success taking
# effect once. A retryable failure that never stops uses up max_attempts
# (3 by the definition's defaults), fails the step, and the saga
# compensates.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init retry order_fulfillment

e2e_start_participant participant \
    --rule 'payment.charge:retry:attempts=1-2,when=$.amount=777' \
    --rule 'fraud.check:retry:when=$.order_id=o-exhaust'
e2e_start_sagad sagad

order() { # order SAGA_ID ORDER_ID AMOUNT
    printf '{"specversion":"1.0","id":"start-%s","source":"urn:test","type":"saga.start","sagatype":"order_fulfillment","sagaid":"%s","data":{"order_id":"%s","customer_id":"c","amount":%s,"items":[]}}\n' \
        "$1" "$1" "$2" "$3"
}
order o-flaky-k o-1 777 >"$E2E_WORK/kafka"
order o-flaky-a o-2 777 >"$E2E_WORK/amqp"
order o-exhaust o-exhaust 10 >>"$E2E_WORK/amqp"
e2e_send "$E2E_IN_KAFKA" --lines "$E2E_WORK/kafka"
e2e_send "$E2E_IN_AMQP" --lines "$E2E_WORK/amqp"
e2e_wait_finished 3 60
e2e_check_invariants

for s in o-flaky-k o-flaky-a; do
    e2e_expect "$s status" "$(e2e_sql "SELECT status FROM sagas WHERE id = '$s'")" completed
    e2e_expect "$s charge attempts" \
        "$(e2e_sql "SELECT string_agg(attempt || ':' || outcome, ' ' ORDER BY attempt) FROM participant_effects WHERE saga_id = '$s' AND step = 'charge_payment'")" \
        "1:failure 2:failure 3:success"
    e2e_expect "$s retries scheduled" \
        "$(e2e_sql "SELECT count(*) FROM saga_history WHERE saga_id = '$s' AND event = 'retry.scheduled' AND step = 'charge_payment'")" 2
    e2e_expect "$s shipped once" \
        "$(e2e_sql "SELECT count(*) FROM participant_effects WHERE saga_id = '$s' AND step = 'ship_order'")" 1
    "$SAGACTL" --db "$E2E_DB" show --json "$s" >"$E2E_WORK/show.json" || e2e_fail "sagactl show failed"
    e2e_expect "$s charge attempts shown" "$(jq -r '.steps[] | select(.name == "charge_payment") | .attempts' "$E2E_WORK/show.json")" 3
done

e2e_expect "o-exhaust status" "$(e2e_sql "SELECT status FROM sagas WHERE id = 'o-exhaust'")" compensated
e2e_expect "o-exhaust fraud attempts" \
    "$(e2e_sql "SELECT string_agg(attempt || ':' || outcome, ' ' ORDER BY attempt) FROM participant_effects WHERE saga_id = 'o-exhaust' AND step = 'fraud_check'")" \
    "1:failure 2:failure 3:failure"
e2e_expect "o-exhaust undone" \
    "$(e2e_sql "SELECT string_agg(step, ' ' ORDER BY seq) FROM participant_effects WHERE saga_id = 'o-exhaust' AND undo")" \
    "reserve_inventory"
e2e_expect "o-exhaust never charged" \
    "$(e2e_sql "SELECT count(*) FROM participant_effects WHERE saga_id = 'o-exhaust' AND step IN ('charge_payment', 'ship_order')")" 0

e2e_figures
e2e_pass
