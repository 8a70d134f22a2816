#!/usr/bin/env bash
# Past the pivot a saga only goes forward: a step after the pivot that
# fails (even without "retryable") is retried up to its max_attempts, and
# if it still fails the saga ends failed and waits for an operator; nothing
# is compensated. A step after the pivot that fails once and then succeeds
# completes the saga.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init pivot travel_booking

e2e_start_participant participant \
    --rule 'travel.notify.itinerary:fail:when=$.to=fail@example.com,code=mailbox_gone' \
    --rule 'travel.notify.itinerary:fail:attempts=1,when=$.to=flaky@example.com'
e2e_start_sagad sagad

trip() { # trip SAGA_ID EMAIL
    printf '{"specversion":"1.0","id":"start-%s","source":"urn:test","type":"saga.start","sagatype":"travel_booking","sagaid":"%s","data":{"traveller":{"name":"Ada","email":"%s"},"from":"CDG","to":"LIS","depart_on":"2025-06-01","return_on":"2025-06-08","card_token":"tok"}}\n' "$1" "$1" "$2"
}
trip t-fail fail@example.com >"$E2E_WORK/kafka"
trip t-flaky flaky@example.com >"$E2E_WORK/amqp"
e2e_send "$E2E_IN_KAFKA" --lines "$E2E_WORK/kafka"
e2e_send "$E2E_IN_AMQP" --lines "$E2E_WORK/amqp"
e2e_wait_finished 2 90
e2e_check_invariants

MAX=$(jq '.defaults.retry.max_attempts' "$E2E_WORK/sagas/travel_booking.json")
e2e_expect "t-fail status" "$(e2e_sql "SELECT status FROM sagas WHERE id = 't-fail'")" failed
e2e_expect "t-fail itinerary attempts" \
    "$(e2e_sql "SELECT count(*) || ' ' || string_agg(DISTINCT outcome, ',') FROM participant_effects WHERE saga_id = 't-fail' AND step = 'send_itinerary'")" \
    "$MAX failure"
e2e_expect "t-fail nothing undone" "$(e2e_sql "SELECT count(*) FROM participant_effects WHERE saga_id = 't-fail' AND undo")" 0
e2e_expect "t-fail tickets issued once" \
    "$(e2e_sql "SELECT count(*) FROM participant_effects WHERE saga_id = 't-fail' AND step = 'issue_tickets' AND outcome = 'success'")" 1
e2e_expect "t-fail never compensating" \
    "$(e2e_sql "SELECT count(*) FROM saga_history WHERE saga_id = 't-fail' AND event IN ('saga.compensating', 'step.compensating')")" 0
"$SAGACTL" --db "$E2E_DB" show --json t-fail >"$E2E_WORK/show.json" || e2e_fail "sagactl show failed"
e2e_expect "t-fail shown" "$(jq -r '.status + " " + ([.steps[] | select(.name == "send_itinerary") | .status + "/" + (.attempts|tostring)] | join(""))' "$E2E_WORK/show.json")" \
    "failed failed/$MAX"

e2e_expect "t-flaky status" "$(e2e_sql "SELECT status FROM sagas WHERE id = 't-flaky'")" completed
e2e_expect "t-flaky itinerary attempts" \
    "$(e2e_sql "SELECT string_agg(attempt || ':' || outcome, ' ' ORDER BY attempt) FROM participant_effects WHERE saga_id = 't-flaky' AND step = 'send_itinerary'")" \
    "1:failure 2:success"

timeout 60 kcat -b "$SAGA_KAFKA_BROKERS" -C -t "$E2E_EVENTS" -e -f '%s\n' 2>/dev/null >"$E2E_WORK/events" || true
e2e_expect "saga.failed event" "$(jq -r 'select(.type == "saga.failed") | .sagaid' "$E2E_WORK/events" | sort -u | paste -sd' ')" "t-fail"
e2e_figures
e2e_pass
