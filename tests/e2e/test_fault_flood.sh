#!/usr/bin/env bash
# Fault scenario 7: a flood of bad messages mixed into real traffic. While
# the workload runs, hundreds of messages sagad must refuse (not JSON,
# truncated, not a CloudEvent, missing attributes, unknown types, saga
# types and saga ids, oversized, invalid UTF-8, NUL bytes, nested deeper
# than the limit, random bytes: faults/bad_messages.py) arrive on every
# input channel of both brokers. Each must be stored whole in the
# dead-letter table with its reason, and the real sagas must be
# unaffected: once drained every invariant holds, and nothing but the
# injected messages was dead-lettered.
source "$(dirname "${BASH_SOURCE[0]}")/faults/lib.sh"
fault_init fault-flood 300

MAX_BYTES=65536
BAD=$(( FAULT_SOAK ? 3000 : 600 ))
python3 "$FAULT_DIR/bad_messages.py" --count "$BAD" --seed "$FAULT_SEED" --max-bytes "$MAX_BYTES" \
    --out "$E2E_WORK/bad" || e2e_fail "cannot write the bad messages"

e2e_start_participant participant --rules "$(fault_rules)"
e2e_start_sagad sagad "{\"max_message_bytes\": $MAX_BYTES}"
e2e_wait_kafka_group 8 sagad
fault_feed 200

channels=("$E2E_IN_KAFKA" "$E2E_REPLIES_KAFKA" "$E2E_IN_AMQP" "$E2E_REPLIES_AMQP")
k=0
for f in "$E2E_WORK"/bad/bad-*.lines; do
    fault_pause 0 400
    fault_send "$f" "${channels[k++ % 4]}" || e2e_fail "cannot send $f"
done
while read -r kind n; do fault_count "bad_message_$kind" "$n"; done <"$E2E_WORK/bad/kinds"

fault_wait_feed
e2e_wait_sql "SELECT count(*) >= $BAD FROM dead_letters" 120 "$BAD dead letters"
fault_drain "$FAULT_SAGAS" 240
fault_check --dead-letters "$E2E_WORK/bad/md5"
e2e_expect "dead letters without a reason" "$(e2e_sql "SELECT count(*) FROM dead_letters WHERE reason = ''")" 0
reasons=$(cat <<'SQL'
SELECT string_agg(r || ' ' || n, ', ' ORDER BY n DESC)
FROM (SELECT regexp_replace(split_part(reason, ':', 1), '[0-9]+|"[^"]*"', '#', 'g') AS r, count(*) AS n
      FROM dead_letters GROUP BY 1) x
SQL
)
e2e_log "dead-letter reasons: $(e2e_sql "$reasons")"
fault_record
e2e_stop sagad
e2e_stop participant
e2e_pass
