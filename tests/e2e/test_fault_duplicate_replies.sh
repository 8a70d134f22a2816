#!/usr/bin/env bash
# Fault scenario 6: replies come twice, and late. The participant sends
# every answer twice with the same event id (sagad must take it once: its
# inbox), once more with a fresh id (a repeated answer: ignored), and
# before it an answer to a command that was never sent (stale: ignored).
# While the workload runs, the test also injects replies to earlier
# attempts: a success for the first, failed, attempt of the credit checks
# that were retried, and a failure for the reservation of orders whose
# reservation had succeeded. None of them may change a saga: once drained
# every invariant holds, and the history records exactly these ignored
# answers.
source "$(dirname "${BASH_SOURCE[0]}")/faults/lib.sh"
fault_init fault-duplicate-replies 300

e2e_start_participant participant --rules "$(fault_rules --all '{"repeat": 2, "dupes": 1, "stale": true}')"
e2e_start_sagad sagad
e2e_wait_kafka_group 8 sagad
fault_feed 150

touch "$E2E_WORK/stale.ids"
# inject_stale: replies to earlier attempts of sagas not injected yet, half
# through Kafka, half through RabbitMQ; their ids go to stale.ids.
inject_stale() {
    local lines=$E2E_WORK/stale-$1.jsonl done_ids
    done_ids=$(sed 's/.*/'"'"'&'"'"'/' "$E2E_WORK/stale.ids" | paste -sd, -)
    e2e_sql "
      SELECT json_build_object('specversion', '1.0', 'id', 'stale/' || c.id, 'source', 'urn:fault-suite',
               'type', 'saga.reply', 'sagaid', c.saga_id, 'sagastep', c.step, 'causationid', c.id,
               'outcome', c.outcome, 'data', c.data)
      FROM (SELECT saga_id, step, regexp_replace(detail->>'id', '/2\$', '/1') AS id, 'success' AS outcome,
                   json_build_object('credit_check_id', 'late') AS data
            FROM saga_history WHERE event = 'command.sent' AND detail->>'id' LIKE '%/credit_check/do/2'
            UNION ALL
            SELECT h.saga_id, h.step, h.detail->'input'->>'causation_id', 'failure',
                   json_build_object('code', 'late', 'message', 'a late failure', 'retryable', false)
            FROM saga_history h WHERE h.event = 'input.reply' AND h.step = 'reserve_inventory'
              AND h.detail->'input'->>'outcome' = 'success' AND NOT h.detail ? 'ignored') c
      WHERE 'stale/' || c.id NOT IN (${done_ids:-''})" >"$lines"
    [[ -s $lines ]] || return 0
    head -n $(( ($(wc -l <"$lines") + 1) / 2 )) "$lines" >"$lines.kafka"
    tail -n +$(( ($(wc -l <"$lines") + 1) / 2 + 1 )) "$lines" >"$lines.amqp"
    fault_send "$lines.kafka" "$E2E_REPLIES_KAFKA" || e2e_fail "cannot inject stale replies"
    [[ -s $lines.amqp ]] && { fault_send "$lines.amqp" "$E2E_REPLIES_AMQP" || e2e_fail "cannot inject stale replies"; }
    jq -r .id "$lines" >>"$E2E_WORK/stale.ids"
    fault_count stale_reply_injected "$(wc -l <"$lines")"
}

round=0
while fault_feed_running; do
    fault_pause 500 1500
    inject_stale $((round++))
done
fault_wait_feed
fault_drain "$FAULT_SAGAS" 240
inject_stale $((round++))
# the last ones reach finished sagas; wait until each was consumed
injected=$(wc -l <"$E2E_WORK/stale.ids")
e2e_wait_sql "SELECT count(*) = $injected FROM inbox WHERE message_id LIKE 'stale/%'" 60 "every injected reply consumed"
fault_drain "$FAULT_SAGAS" 60
fault_check

answered=$(e2e_sql "SELECT count(*) FROM participant_effects WHERE outcome <> 'none'")
fault_count reply_sent_twice "$answered"
fault_count reply_repeated_with_new_id "$answered"
fault_count reply_to_unknown_command "$answered"
# each answer: its fresh-id repeat and its stale one are ignored; so is
# every injected reply; the same-id copy never reaches the saga (inbox)
e2e_expect "answers the sagas ignored" \
    "$(e2e_sql "SELECT count(*) FROM saga_history WHERE event = 'input.reply' AND detail ? 'ignored'")" \
    $((2 * answered + injected))
e2e_expect "replies taken from the brokers" \
    "$(e2e_sql "SELECT count(*) FROM saga_history WHERE event = 'input.reply'")" \
    $((3 * answered + injected))
dups=$(e2e_metric sagad sagad_duplicates_total)
((dups >= answered)) || e2e_fail "sagad counted $dups duplicates, fewer than the $answered answers sent twice"
fault_record
e2e_stop sagad
e2e_stop participant
e2e_pass
