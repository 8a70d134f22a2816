#!/usr/bin/env bash
# A parallel group with one member failing: the group fails, the members
# that succeeded (even one whose success arrives after the failure) and the
# steps before the group are compensated, the group's members before the
# earlier steps; the failed member is not compensated; the steps after the
# group never run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init parallel order_fulfillment travel_booking

e2e_start_participant participant \
    --rule 'travel.car.rent:fail:when=$.trip_id=p-car-late,delay=1s' \
    --rule 'travel.hotel.book:fail:when=$.trip_id=p-hotel-first' \
    --rule 'travel.car.rent:succeed:when=$.trip_id=p-hotel-first,delay=1s' \
    --rule 'fraud.check:fail:when=$.order_id=p-fraud'
e2e_start_sagad sagad

trip() {
    printf '{"specversion":"1.0","id":"start-%s","source":"urn:test","type":"saga.start","sagatype":"travel_booking","sagaid":"%s","data":{"traveller":{"name":"Ada","email":"ada@example.com"},"from":"CDG","to":"LIS","depart_on":"2025-06-01","return_on":"2025-06-08","card_token":"tok"}}\n' "$1" "$1"
}
{ trip p-car-late; trip p-hotel-first; } >"$E2E_WORK/trips"
e2e_send "$E2E_IN_KAFKA" --lines "$E2E_WORK/trips"
e2e_send "$E2E_IN_AMQP" --count 1 --sagatype order_fulfillment --prefix p-fraud \
    --data '{"order_id":"p-fraud","customer_id":"c","amount":5,"items":[]}'
e2e_wait_finished 3 60
e2e_check_invariants

undone() { e2e_sql "SELECT coalesce(string_agg(step, ' ' ORDER BY seq), '-') FROM participant_effects WHERE saga_id = '$1' AND undo"; }
steps() { "$SAGACTL" --db "$E2E_DB" show --json "$1" | jq -r '[.steps[] | .name + "=" + .status] | join(" ")'; }

# The hotel succeeded before the car failed: hotel undone, then the flight.
e2e_expect "p-car-late status" "$(e2e_sql "SELECT status FROM sagas WHERE id = 'p-car-late'")" compensated
e2e_expect "p-car-late undone" "$(undone p-car-late)" "book_hotel book_flight"
e2e_expect "p-car-late steps" "$(steps p-car-late)" \
    "book_flight=compensated book_hotel=compensated rent_car=failed charge_card=skipped issue_tickets=skipped send_itinerary=skipped"

# The hotel failed first; the car's success came a second later and is
# still undone, before the flight.
e2e_expect "p-hotel-first status" "$(e2e_sql "SELECT status FROM sagas WHERE id = 'p-hotel-first'")" compensated
e2e_expect "p-hotel-first undone" "$(undone p-hotel-first)" "rent_car book_flight"
e2e_expect "p-hotel-first car undo data" \
    "$(e2e_sql "SELECT data->>'rental_id' FROM participant_effects WHERE command_id = 'p-hotel-first/rent_car/undo/1'")" "car-p-hotel-first"

# Order: the credit check succeeded (it has no compensation), fraud failed.
e2e_expect "p-fraud status" "$(e2e_sql "SELECT status FROM sagas WHERE id = 'p-fraud-1'")" compensated
e2e_expect "p-fraud undone" "$(undone p-fraud-1)" "reserve_inventory"
e2e_expect "p-fraud steps" "$(steps p-fraud-1)" \
    "reserve_inventory=compensated fraud_check=failed credit_check=succeeded charge_payment=skipped ship_order=skipped"

e2e_expect "commands after the group" \
    "$(e2e_sql "SELECT count(*) FROM participant_effects WHERE step IN ('charge_card', 'issue_tickets', 'send_itinerary', 'charge_payment', 'ship_order')")" 0
e2e_figures
e2e_pass
