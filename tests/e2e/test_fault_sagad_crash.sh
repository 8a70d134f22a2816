#!/usr/bin/env bash
# Fault scenario 1: sagad dies, and nothing is lost nor done twice.
# While the workload runs, sagad is stopped dead on purpose at the two
# points where a crash is hardest (test-only hooks): right after a batch
# committed (nothing acknowledged or published yet) and right after the
# brokers confirmed outbox rows (not deleted yet); then it is SIGKILLed at
# random moments and restarted each time. Once drained, every invariant
# holds (faults/check_invariants.sh).
source "$(dirname "${BASH_SOURCE[0]}")/faults/lib.sh"
fault_init fault-sagad-crash 300

e2e_start_participant participant --rules "$(fault_rules)"
e2e_start_sagad sagad
e2e_wait_kafka_group 8 sagad
fault_feed 300

# The crash points, each at a random passage.
for point in after_commit after_publish; do
    fault_rand 1 6; n=$FAULT_R
    fault_kill sagad
    E2E_SAGAD_ENV="SAGA_TEST_CRASH_POINT=$point SAGA_TEST_CRASH_AFTER=$n"
    e2e_spawn_sagad sagad
    E2E_SAGAD_ENV=""
    fault_wait_exit sagad 60
    [[ $FAULT_EXIT == 137 ]] ||
        e2e_fail "sagad armed to crash at $point (passage $n) ended with '$FAULT_EXIT', not 137"
    grep -q "test crash point '$point' reached" "${E2E_LOG[sagad]}" ||
        e2e_fail "sagad did not report reaching the crash point $point"
    fault_count "crash_$point"
    fault_restart_sagad sagad
done

# SIGKILL at random moments while the workload is fed and processed.
kills=$(( FAULT_SOAK ? 12 : 4 ))
for ((k = 0; k < kills; k++)); do
    fault_pause 500 3000
    fault_kill sagad
    fault_count sigkill
    fault_pause 0 1000
    fault_restart_sagad sagad
done

fault_wait_feed
fault_drain "$FAULT_SAGAS" 240
fault_check
fault_record
e2e_stop sagad
e2e_stop participant
e2e_pass
