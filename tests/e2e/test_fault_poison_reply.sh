#!/usr/bin/env bash
# Fault scenario 10: poison replies. Some participants answer with a
# success whose result lacks what a later step's template reads: a flight
# booked without legs (the hotel booking reads legs[0].number), a greeting
# composed without a draft id (the delivery reads it), tickets issued
# without tickets (the itinerary, after the pivot, reads them). The step
# whose command cannot be rendered fails with the reason: before the pivot
# the saga compensates what was done, after it the saga fails and waits for
# an operator, the reason recorded either way. The other sagas keep going:
# once drained every invariant holds.
source "$(dirname "${BASH_SOURCE[0]}")/faults/lib.sh"
TRIP='{"traveller":{"name":"%s","email":"p{n}@example.com"},"from":"CDG","to":"LIS","depart_on":"2025-06-01","return_on":"2025-06-08","card_token":"tok-{n}"}'
# shellcheck disable=SC2059
FAULT_EXTRA=(
    "travel_booking trip-poison 1 $(printf "$TRIP" Poison)"
    "travel_booking trip-poison-pivot 1 $(printf "$TRIP" PoisonPivot)"
    "greeting greet-poison 1 {\"name\":\"Poison\"}"
)
FAULT_EXPECTED_EXTRA=$'trip-poison compensated\ntrip-poison-pivot failed\ngreet-poison compensated\n'
fault_init fault-poison-reply 230

e2e_start_participant participant --rules "$(fault_rules \
    '{"type": "travel.flight.book", "action": "succeed", "when": "$.traveller.name=Poison", "result": {"booking_ref": "NO-LEGS"}}' \
    '{"type": "travel.flight.book", "action": "succeed", "when": "$.traveller.name=PoisonPivot", "result": {"booking_ref": "NO-TICKETS", "legs": [{"number": "SG9"}]}}' \
    '{"type": "travel.tickets.issue", "action": "succeed", "when": "$.booking_ref=NO-TICKETS", "result": {"count": 0}}' \
    '{"type": "greeting.compose", "action": "succeed", "when": "$.to=Poison", "result": {"text": "Hello"}}')"
e2e_start_sagad sagad
e2e_wait_kafka_group 8 sagad
fault_feed 150
fault_wait_feed
fault_drain "$FAULT_SAGAS" 180
fault_check

# The reason names the template path that had no value.
check_reason() {
    local prefix=$1 status=$2 path=$3 n bad
    n=$(e2e_sql "SELECT count(*) FROM sagas WHERE id ~ '^$prefix-[0-9]+$' AND status = '$status'")
    ((n > 0)) || e2e_fail "no $prefix saga ended $status"
    bad=$(e2e_sql "SELECT count(*) FROM sagas s WHERE s.id ~ '^$prefix-[0-9]+$' AND NOT (
                     position('$path' IN coalesce(s.state->>'reason', '')) > 0 AND EXISTS (
                     SELECT 1 FROM saga_history h WHERE h.saga_id = s.id AND h.event = 'step.failed'
                       AND position('$path' IN h.detail->>'reason') > 0))")
    e2e_expect "$prefix sagas without the template's path in their reason" "$bad" 0
    fault_count "poison_reply_$status" "$n"
}
check_reason trip-poison-pivot failed '$.steps.issue_tickets.tickets'
check_reason trip-poison compensated '$.steps.book_flight.legs[0].number'
check_reason greet-poison compensated '$.steps.compose.draft_id'
e2e_log "reasons: $(e2e_sql "SELECT string_agg(DISTINCT left(state->>'reason', 140), ' | ') FROM sagas WHERE id LIKE '%poison%'")"
fault_record
e2e_stop sagad
e2e_stop participant
e2e_pass
