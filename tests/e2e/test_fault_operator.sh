#!/usr/bin/env bash
# Fault scenario 8: operators act while sagad works. Besides the workload,
# some trips cannot send their itinerary (after the pivot: they retry, then
# fail and wait for an operator). While everything runs, `sagactl abort`
# hits random unfinished sagas, several at once and sometimes the same saga
# twice at the same moment, and `sagactl retry` resumes every failed saga,
# racing with aborts of the same sagas. sagactl and sagad change sagas only
# through versioned transitions, so every race must resolve to one order:
# once drained every invariant holds, every aborted saga ended completed
# (abort past the pivot, or too late) or compensated, and every failed saga
# was resumed to completion.
source "$(dirname "${BASH_SOURCE[0]}")/faults/lib.sh"
FAULT_EXTRA=("travel_booking trip-stuck 2 {\"traveller\":{\"name\":\"S{n}\",\"email\":\"stuck@example.com\"},\"from\":\"CDG\",\"to\":\"LIS\",\"depart_on\":\"2025-06-01\",\"return_on\":\"2025-06-08\",\"card_token\":\"tok-{n}\"}")
FAULT_EXPECTED_EXTRA="trip-stuck completed"$'\n'
fault_init fault-operator 300

e2e_start_participant participant --rules "$(fault_rules \
    '{"type": "travel.notify.itinerary", "action": "fail", "attempts": "1-4", "when": "$.to=stuck@example.com", "code": "mailbox_full", "message": "try later"}')"
e2e_start_sagad sagad
e2e_wait_kafka_group 8 sagad
CFG=$E2E_WORK/sagad.json

# sagactl_do VERB ID: one sagactl call; its exit status goes to VERB.rc
# (0 done, 1 refused); anything else is a failure of the test.
sagactl_do() {
    local rc=0
    "$SAGACTL" --db "$E2E_DB" "$1" "$2" --config "$CFG" --reason "fault test" \
        >>"$E2E_WORK/sagactl.log" 2>&1 || rc=$?
    echo "$rc $2" >>"$E2E_WORK/$1.rc"
    if [[ $1 == abort && $rc == 0 ]]; then echo "$2" >>"$E2E_WORK/aborted"; fi
}

# Aborts random unfinished sagas, a few at a time, in parallel; now and
# then the same saga twice at once.
aborter() {
    local ids id n salt
    while [[ ! -e $E2E_WORK/abort-stop ]]; do
        fault_pause 100 400
        fault_rand 2 6; n=$FAULT_R
        fault_rand 0 999999; salt=$FAULT_R
        mapfile -t ids < <(e2e_sql "SELECT id FROM sagas WHERE status IN ('running', 'failed')
                                    ORDER BY md5(id || '$salt') LIMIT $n" 2>/dev/null)
        ((${#ids[@]})) || continue
        for id in "${ids[@]}"; do sagactl_do abort "$id" & done
        fault_rand 0 2
        ((FAULT_R == 0)) && sagactl_do abort "${ids[0]}" &
        wait
    done
}

# Resumes every failed saga; now and then twice at once, or racing an abort.
retrier() {
    local ids id
    while [[ ! -e $E2E_WORK/stop ]]; do
        fault_pause 300 800
        mapfile -t ids < <(e2e_sql "SELECT id FROM sagas WHERE status = 'failed'" 2>/dev/null)
        for id in "${ids[@]}"; do
            sagactl_do retry "$id" &
            fault_rand 0 3
            case $FAULT_R in
            0) sagactl_do retry "$id" & ;;
            1) sagactl_do abort "$id" & ;;
            esac
        done
        wait
    done
}

fault_feed 200
(FAULT_RNG=$((FAULT_SEED + 1)); aborter) &
aborter_pid=$!
E2E_PIDS+=("$aborter_pid")
(FAULT_RNG=$((FAULT_SEED + 2)); retrier) &
retrier_pid=$!
E2E_PIDS+=("$retrier_pid")
fault_wait_feed

# the aborts go on a little longer than the workload, the retries until
# nothing is left failed
fault_pause 1000 3000
touch "$E2E_WORK/abort-stop"
wait "$aborter_pid" || true
e2e_wait_sql "SELECT count(*) = $FAULT_SAGAS AND count(*) FILTER (WHERE status IN ('completed', 'compensated')) = count(*) FROM sagas" \
    180 "every saga finished, the failed ones resumed"
touch "$E2E_WORK/stop"
wait "$retrier_pid" || true
fault_drain "$FAULT_SAGAS" 120

[[ -s $E2E_WORK/aborted ]] || e2e_fail "no abort took effect"
sort -u "$E2E_WORK/aborted" | sed 's/$/$ completed,compensated/' >"$E2E_WORK/expected-aborted"
FAULT_EXPECTED_EXTRA+=$(cat "$E2E_WORK/expected-aborted")$'\n'
bad=$(cat "$E2E_WORK"/abort.rc "$E2E_WORK"/retry.rc | awk '$1 != 0 && $1 != 1' | head -n 3)
[[ -z $bad ]] || e2e_fail "sagactl failed otherwise than by a refusal: $bad (see $E2E_WORK/sagactl.log)"
for verb in abort retry; do
    fault_count "sagactl_$verb" "$(wc -l <"$E2E_WORK/$verb.rc")"
    e2e_log "sagactl $verb: $(awk '$1 == 0' "$E2E_WORK/$verb.rc" | wc -l) took effect, $(awk '$1 == 1' "$E2E_WORK/$verb.rc" | wc -l) refused (the saga had moved on)"
done
resumed=$(e2e_sql "SELECT count(*) FROM sagas WHERE id LIKE 'trip-stuck-%' AND status = 'completed'
                   AND id IN (SELECT saga_id FROM saga_history WHERE event = 'input.retry' AND NOT detail ? 'ignored')")
((resumed > 0)) || e2e_fail "no stuck trip was resumed by sagactl retry and completed"
e2e_log "$resumed stuck trips failed, were resumed and completed"
fault_check
e2e_expect "aborted sagas without the abort in their history" \
    "$(e2e_sql "SELECT count(*) FROM (VALUES $(sort -u "$E2E_WORK/aborted" | sed "s/.*/('&')/" | paste -sd,)) a(id)
                WHERE NOT EXISTS (SELECT 1 FROM saga_history h WHERE h.saga_id = a.id AND h.event = 'input.abort' AND NOT h.detail ? 'ignored')")" 0
fault_record
e2e_stop sagad
e2e_stop participant
e2e_pass
