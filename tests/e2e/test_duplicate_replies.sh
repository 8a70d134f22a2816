#!/usr/bin/env bash
# Duplicate and stale replies change nothing: the same reply delivered twice
# (same event id) is dropped by the inbox; a second answer to a command
# (another event id, same causationid), a reply whose causationid is not the
# command the saga waits for, and replies to a finished saga are recorded in
# the history as ignored. Every step still takes effect once and the saga
# completes once.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init dupreplies order_fulfillment

e2e_start_participant participant \
    --rule 'inventory.reserve:succeed:repeat=2' \
    --rule 'fraud.check:succeed:dupes=2' \
    --rule 'credit.check:succeed:stale' \
    --rule 'payment.charge:succeed:repeat=2,dupes=1,stale'
e2e_start_sagad sagad

DATA='{"order_id":"o-{n}","customer_id":"c-{n}","amount":{n}0,"items":[]}'
e2e_send "$E2E_IN_KAFKA" --count 2 --sagatype order_fulfillment --prefix dk --data "$DATA"
e2e_send "$E2E_IN_AMQP" --count 2 --sagatype order_fulfillment --prefix da --data "$DATA"
e2e_wait_finished 4 60

# Late answers to a finished saga: a repeated success, a failure.
reply() { # reply ID SAGA STEP CAUSATION OUTCOME DATA
    printf '{"specversion":"1.0","id":"%s","source":"urn:test","type":"saga.reply","sagaid":"%s","sagastep":"%s","causationid":"%s","outcome":"%s","data":%s}\n' "$@"
}
{
    reply late-1 dk-1 ship_order dk-1/ship_order/do/1 success '{"tracking_id":"other"}'
    reply late-2 dk-1 reserve_inventory dk-1/reserve_inventory/do/1 failure '{"code":"x","retryable":false}'
} >"$E2E_WORK/late"
e2e_send "$E2E_REPLIES_KAFKA" --lines "$E2E_WORK/late"
e2e_wait_sql "SELECT count(*) = 2 FROM saga_history WHERE saga_id = 'dk-1' AND event = 'input.reply' AND detail->'input'->>'causation_id' IN ('dk-1/ship_order/do/1', 'dk-1/reserve_inventory/do/1') AND detail ? 'ignored'" \
    30 "the late replies recorded as ignored"
e2e_check_invariants

e2e_expect "completed" "$(e2e_sql "SELECT count(*) FROM sagas WHERE status = 'completed'")" 4
e2e_expect "commands (one per step and saga)" "$(e2e_sql "SELECT count(*) FROM participant_effects")" 20
e2e_expect "completions per saga" \
    "$(e2e_sql "SELECT string_agg(DISTINCT n::text, ',') FROM (SELECT count(*) n FROM saga_history WHERE event = 'saga.completed' GROUP BY saga_id) x")" 1
for s in dk-1 dk-2 da-1 da-2; do
    # applied replies: exactly one per command
    e2e_expect "$s replies applied" \
        "$(e2e_sql "SELECT count(*) FROM saga_history WHERE saga_id = '$s' AND event = 'input.reply' AND NOT detail ? 'ignored'")" 5
    # ignored: fraud 2 dupes, credit 1 stale, charge 1 dupe + 1 stale
    want=5
    [[ $s == dk-1 ]] && want=7
    e2e_expect "$s replies ignored" \
        "$(e2e_sql "SELECT count(*) FROM saga_history WHERE saga_id = '$s' AND event = 'input.reply' AND detail ? 'ignored'")" "$want"
    e2e_expect "$s stale replies seen" \
        "$(e2e_sql "SELECT count(*) FROM saga_history WHERE saga_id = '$s' AND event = 'input.reply' AND detail->'input'->>'causation_id' LIKE '%~stale'")" 2
done
# The same event twice (reserve and charge, per saga) never reached a saga.
e2e_expect "repeated events seen once" \
    "$(e2e_sql "SELECT count(*) FROM saga_history WHERE event = 'input.reply' AND detail->'input'->>'causation_id' LIKE '%/reserve_inventory/do/1' AND NOT detail ? 'ignored'")" 4
e2e_expect "repeated events in the history (with the late one)" \
    "$(e2e_sql "SELECT count(*) FROM saga_history WHERE event = 'input.reply' AND detail->'input'->>'causation_id' LIKE '%/reserve_inventory/do/1'")" 5
dups=$(e2e_metric sagad sagad_duplicates_total)
((dups >= 8)) || e2e_fail "sagad counted $dups duplicates, expected at least 8"
e2e_log "duplicates counted by sagad: $dups"
e2e_figures
e2e_pass
