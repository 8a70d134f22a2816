#!/usr/bin/env bash
# A non-retryable failure at each step of order_fulfillment and
# travel_booking (up to and including the pivot) is not retried and makes
# the saga compensate: every step that succeeded and has a compensation is
# undone exactly once, in exact reverse order (the members of a parallel
# group at once), with the data its own result gave; steps that failed are
# not undone; the saga ends compensated. Checked in the participant's
# effects and in the saga history.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init compensation order_fulfillment travel_booking

e2e_start_participant participant \
    --rule 'inventory.reserve:fail:when=$.order_id=o-reserve' \
    --rule 'fraud.check:fail:when=$.order_id=o-fraud' \
    --rule 'credit.check:fail:when=$.customer=c-credit' \
    --rule 'payment.charge:fail:when=$.amount=4444' \
    --rule 'shipping.ship:fail:when=$.order_id=o-ship' \
    --rule 'travel.flight.book:fail:when=$.trip_id=t-flight' \
    --rule 'travel.hotel.book:fail:when=$.trip_id=t-hotel' \
    --rule 'travel.car.rent:fail:when=$.trip_id=t-car' \
    --rule 'travel.payment.charge:fail:when=$.trip_id=t-charge' \
    --rule 'travel.tickets.issue:fail:when=$.trip_id=t-tickets'
e2e_start_sagad sagad

order() { # order SAGA_ID ORDER_ID CUSTOMER AMOUNT
    printf '{"specversion":"1.0","id":"start-%s","source":"urn:test","type":"saga.start","sagatype":"order_fulfillment","sagaid":"%s","data":{"order_id":"%s","customer_id":"%s","amount":%s,"items":[{"sku":"a","qty":2}]}}\n' \
        "$1" "$1" "$2" "$3" "$4"
}
trip() { # trip SAGA_ID
    printf '{"specversion":"1.0","id":"start-%s","source":"urn:test","type":"saga.start","sagatype":"travel_booking","sagaid":"%s","data":{"traveller":{"name":"Ada","email":"ada@example.com"},"from":"CDG","to":"LIS","depart_on":"2025-06-01","return_on":"2025-06-08","card_token":"tok"}}\n' \
        "$1" "$1"
}
{
    order o-reserve o-reserve c-1 10
    order o-fraud o-fraud c-2 20
    order o-credit o-credit-x c-credit 30
    order o-charge o-charge-x c-4 4444
    order o-ship o-ship c-5 50
} >"$E2E_WORK/orders"
{
    trip t-flight
    trip t-hotel
    trip t-car
    trip t-charge
    trip t-tickets
} >"$E2E_WORK/trips"
e2e_send "$E2E_IN_KAFKA" --lines "$E2E_WORK/orders"
e2e_send "$E2E_IN_AMQP" --lines "$E2E_WORK/trips"
e2e_wait_finished 10 90
e2e_expect "compensated sagas" "$(e2e_sql "SELECT count(*) FROM sagas WHERE status = 'compensated'")" 10
e2e_check_invariants

# Steps undone, in the order they were undone; members of one parallel
# group that were undone one after the other are written {a,b}.
canon() { sed -E 's/(book_hotel rent_car|rent_car book_hotel)/{book_hotel,rent_car}/'; }
undone_effects() {
    e2e_sql "SELECT coalesce(string_agg(step, ' ' ORDER BY seq), '-') FROM participant_effects WHERE saga_id = '$1' AND undo" | canon
}
undone_history() {
    e2e_sql "SELECT coalesce(string_agg(step, ' ' ORDER BY seq), '-') FROM saga_history WHERE saga_id = '$1' AND event = 'step.compensated'" | canon
}
# check SAGA FAILED_STEP EXPECTED_UNDO...
check() {
    local saga=$1 failed=$2 want=$3 alt=${4:-}
    local eff hist
    eff=$(undone_effects "$saga")
    hist=$(undone_history "$saga")
    [[ $eff == "$want" || (-n $alt && $eff == "$alt") ]] || e2e_fail "$saga: undone (effects) '$eff', expected '$want'${alt:+ or '$alt'}"
    e2e_expect "$saga: undone (history)" "$hist" "$eff"
    e2e_expect "$saga: attempts of the failed step" \
        "$(e2e_sql "SELECT count(*) || ' ' || string_agg(outcome, ',') FROM participant_effects WHERE saga_id = '$saga' AND step = '$failed' AND NOT undo")" "1 failure"
    e2e_expect "$saga: failed step status" \
        "$(e2e_sql "SELECT count(*) FROM saga_history WHERE saga_id = '$saga' AND event = 'step.failed' AND step = '$failed'")" 1
    e2e_log "$saga: $failed failed, undone: $eff"
}
check o-reserve reserve_inventory "-"
check o-fraud fraud_check "reserve_inventory"
check o-credit credit_check "reserve_inventory"
check o-charge charge_payment "reserve_inventory"
check o-ship ship_order "charge_payment reserve_inventory"
check t-flight book_flight "-"
# The other member of the group may or may not have succeeded before the
# failure stopped the group; when it did, it is undone before the flight.
check t-hotel book_hotel "rent_car book_flight" "book_flight"
check t-car rent_car "book_hotel book_flight" "book_flight"
check t-charge charge_card "{book_hotel,rent_car} book_flight"
check t-tickets issue_tickets "charge_card {book_hotel,rent_car} book_flight"

# Compensations carry what the step's own result gave.
e2e_expect "refund data" "$(e2e_sql "SELECT data->>'charge_id' FROM participant_effects WHERE command_id = 'o-ship/charge_payment/undo/1'")" "ch-o-ship"
e2e_expect "release data" "$(e2e_sql "SELECT data->>'reservation_id' FROM participant_effects WHERE command_id = 'o-ship/reserve_inventory/undo/1'")" "res-o-ship"
e2e_expect "flight cancel data" "$(e2e_sql "SELECT data->>'booking_ref' FROM participant_effects WHERE command_id = 't-tickets/book_flight/undo/1'")" "bk-t-tickets"
e2e_expect "hotel cancel data" "$(e2e_sql "SELECT data->>'reservation' FROM participant_effects WHERE command_id = 't-charge/book_hotel/undo/1'")" "htl-t-charge"

# Steps after the failed one never ran.
e2e_expect "commands after a failed step" \
    "$(e2e_sql "SELECT count(*) FROM participant_effects WHERE (saga_id = 'o-charge' AND step = 'ship_order') OR (saga_id = 't-flight' AND step <> 'book_flight')")" 0

"$SAGACTL" --db "$E2E_DB" show --json o-ship >"$E2E_WORK/show.json" || e2e_fail "sagactl show failed"
e2e_expect "shown steps of o-ship" "$(jq -r '[.steps[] | .name + "=" + .status] | join(" ")' "$E2E_WORK/show.json")" \
    "reserve_inventory=compensated fraud_check=succeeded credit_check=succeeded charge_payment=compensated ship_order=failed"

e2e_figures
e2e_pass
