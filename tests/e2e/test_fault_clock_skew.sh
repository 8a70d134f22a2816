#!/usr/bin/env bash
# Fault scenario 9: timers under skewed clocks. Two sagad processes share
# the work, each under libfaketime with its wall clock off the database's:
# one 15 s behind, one 5 s ahead. The sagas (faults/sagas/) time out on
# purpose: a first attempt never answered (step timeout, then a retry after
# a backoff), a first answer that comes after its step's timeout (ignored
# when it comes), and a saga deadline that passes while a step waits. Every
# timer must fire once, and never early by the database's clock: between
# the transaction that armed it and the one it fired in there is at least
# its duration, whichever process armed it and whichever fired it.
source "$(dirname "${BASH_SOURCE[0]}")/faults/lib.sh"
FAULT_KINDS=(
    "fault_timers timer 8 {\"n\":{n}}"
    "fault_deadline deadline 2 {\"n\":{n}}"
)
FAULT_EXPECTED_EXTRA="timer completed"$'\n'"deadline compensated"$'\n'
fault_init fault-clock-skew 100 tests/e2e/faults/sagas/fault_timers.json tests/e2e/faults/sagas/fault_deadline.json

FAKETIME_LIB=$(ls /usr/lib/*/faketime/libfaketime.so.1 2>/dev/null | head -n 1)
[[ -n $FAKETIME_LIB ]] || e2e_fail "libfaketime is not installed (Debian package faketime)"
# librdkafka's timed waits need their deadlines moved as well
# (tests/tools/faketime_cnd.c)
CND_LIB=$E2E_BIN/tests/tools/libfaketime-cnd.so
[[ -f $CND_LIB ]] || e2e_fail "no $CND_LIB: build first"
# Timings measured against the database's clock allow this much for the
# distance between a transaction's timestamp and the moment sagad read its
# own clock for it.
TOLERANCE_MS=250

e2e_start_participant participant --rules "$(fault_rules \
    '{"type": "timers.hold", "action": "silent", "attempts": "1"}' \
    '{"type": "timers.confirm", "action": "succeed", "attempts": "1", "delay": "4s"}' \
    '{"type": "deadline.wait", "action": "silent"}')"
skews=(-15 +5)
for i in 1 2; do
    E2E_SAGAD_ENV="LD_PRELOAD=$FAKETIME_LIB:$CND_LIB FAKETIME=${skews[i - 1]}s FAKETIME_DONT_FAKE_MONOTONIC=1"
    e2e_start_sagad "sagad$i"
    fault_count sagad_clock_skewed
done
E2E_SAGAD_ENV=""
e2e_wait_kafka_group 8 sagad1 sagad2
fault_feed 200
fault_wait_feed
fault_drain "$FAULT_SAGAS" 180
fault_check

# Both clocks really were off, and each sagad saw by how much.
for i in 1 2; do
    off=$(grep -o "the wall clock is -\?[0-9]* ms off" "${E2E_LOG[sagad$i]}" | head -n 1 | grep -o -- "-\?[0-9]*" || true)
    [[ -n $off ]] || e2e_fail "sagad$i did not notice its clock was ${skews[i - 1]} s off the database's"
    want=$(( ${skews[i - 1]} * 1000 ))
    (( off - want < 1000 && want - off < 1000 )) ||
        e2e_fail "sagad$i measured its clock $off ms off the database's, not about $want"
    e2e_log "sagad$i: wall clock $off ms off the database's"
done

# Armed: the entry that scheduled it; fired: the timer input. Durations:
# step timeouts from the definitions, retry delays from retry.scheduled,
# the deadline from the saga's definition.
timings=$(cat <<'SQL'
WITH fired AS (
  SELECT h.saga_id, h.seq, h.at, h.step, h.detail->'input'->>'timer' AS timer,
         (h.detail->'input'->>'attempt')::int AS attempt, h.detail ? 'ignored' AS ignored
  FROM saga_history h WHERE h.event = 'input.timer'),
armed AS (
  SELECT f.*, CASE f.timer
      WHEN 'step_timeout' THEN (SELECT max(c.at) FROM saga_history c WHERE c.saga_id = f.saga_id
                                AND c.event = 'command.sent' AND c.step = f.step
                                AND (c.detail->>'attempt')::int = f.attempt AND NOT (c.detail->>'undo')::boolean)
      WHEN 'retry_due' THEN (SELECT max(r.at) FROM saga_history r WHERE r.saga_id = f.saga_id
                             AND r.event = 'retry.scheduled' AND r.step = f.step AND r.seq < f.seq)
      WHEN 'deadline' THEN (SELECT min(s.at) FROM saga_history s WHERE s.saga_id = f.saga_id
                            AND s.event = 'input.start') END AS armed_at,
    CASE f.timer
      WHEN 'step_timeout' THEN CASE f.step WHEN 'confirm' THEN 2000 WHEN 'hold' THEN 3000 ELSE 60000 END
      WHEN 'retry_due' THEN (SELECT (r.detail->>'delay_ms')::bigint FROM saga_history r
                             WHERE r.saga_id = f.saga_id AND r.event = 'retry.scheduled'
                               AND r.step = f.step AND r.seq < f.seq ORDER BY r.seq DESC LIMIT 1)
      WHEN 'deadline' THEN 4000 END AS due_ms
  FROM fired f)
SELECT count(*) FILTER (WHERE NOT ignored),
       count(*) FILTER (WHERE NOT ignored AND (armed_at IS NULL OR due_ms IS NULL)),
       count(*) FILTER (WHERE NOT ignored AND extract(epoch FROM at - armed_at) * 1000 < due_ms - :tol),
       coalesce(string_agg(saga_id || ' ' || timer || ' after ' || round(extract(epoch FROM at - armed_at) * 1000)
                           || ' ms of ' || due_ms, '; ')
                FILTER (WHERE NOT ignored AND extract(epoch FROM at - armed_at) * 1000 < due_ms - :tol), ''),
       count(*) FILTER (WHERE ignored),
       (SELECT count(*) FROM (SELECT 1 FROM fired WHERE NOT ignored
                              GROUP BY saga_id, timer, step, attempt HAVING count(*) > 1) x),
       coalesce(min(extract(epoch FROM at - armed_at) * 1000 - due_ms) FILTER (WHERE NOT ignored), 0)::bigint
FROM armed
SQL
)
IFS='|' read -r fired unmatched early examples stale twice margin < <(psql "$E2E_DB" -XAtq -v tol="$TOLERANCE_MS" <<<"$timings")
e2e_log "timers fired: $fired (stale, ignored: $stale); earliest fired $margin ms after its due time"
((fired > 0)) || e2e_fail "no timer fired"
e2e_expect "timers fired without a matching arming entry" "$unmatched" 0
e2e_expect "timers fired more than once" "$twice" 0
[[ $early == 0 ]] || e2e_fail "$early timers fired early by the database's clock: ${examples:0:400}"
e2e_expect "deadlines fired" \
    "$(e2e_sql "SELECT count(*) FROM saga_history WHERE event = 'input.timer' AND detail->'input'->>'timer' = 'deadline' AND NOT detail ? 'ignored'")" \
    "$(e2e_sql "SELECT count(*) FROM sagas WHERE type = 'fault_deadline'")"
fault_record
e2e_stop sagad1
e2e_stop sagad2
e2e_stop participant
e2e_pass
