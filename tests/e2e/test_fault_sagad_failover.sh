#!/usr/bin/env bash
# Fault scenario 2: several sagad processes share the work; one dies and
# the survivors take over. First two processes run the first half of the
# workload and one of them is SIGKILLed mid-run: the consumer group moves
# all Kafka partitions to the survivor, whose relay also sends what the
# dead one had claimed from the outbox once the claim's lease ends. Then
# three processes run the second half and one of them is killed likewise.
# Once drained, every invariant holds and each survivor did work.
source "$(dirname "${BASH_SOURCE[0]}")/faults/lib.sh"
fault_init fault-sagad-failover 400

chunks=$((FAULT_SAGAS / FAULT_CHUNK))
half=$((chunks / 2))

e2e_start_participant participant --rules "$(fault_rules)"
e2e_start_sagad sagad1
e2e_start_sagad sagad2
e2e_wait_kafka_group 8 sagad1 sagad2

# two processes, one killed
fault_feed 250 0 $((half - 1))
fault_pause 1000 "$((half * 250))"
fault_rand 1 2; victim=sagad$FAULT_R
survivor=sagad$(( ${victim#sagad} == 1 ? 2 : 1 ))
fault_kill "$victim"
fault_count sigkill_one_of_two
e2e_wait_kafka_group 8 "$survivor"
e2e_log "all partitions on $survivor"
fault_wait_feed

# three processes, one killed
fault_restart_sagad "$victim"
e2e_start_sagad sagad3
e2e_wait_kafka_group 8 sagad1 sagad2 sagad3
fault_feed 250 "$half" $((chunks - 1))
fault_pause 1000 "$(((chunks - half) * 250))"
fault_rand 1 3; victim=sagad$FAULT_R
fault_kill "$victim"
fault_count sigkill_one_of_three
survivors=()
for i in 1 2 3; do [[ sagad$i == "$victim" ]] || survivors+=("sagad$i"); done
e2e_wait_kafka_group 8 "${survivors[@]}"
e2e_log "partitions shared by ${survivors[*]}"
fault_wait_feed

fault_drain "$FAULT_SAGAS" 240
fault_check
for name in "${survivors[@]}"; do
    c=$(e2e_metric "$name" sagad_transitions_total)
    e2e_log "$name committed $c transitions"
    ((c > 0)) || e2e_fail "$name did no work"
done
fault_record
for name in "${survivors[@]}"; do e2e_stop "$name"; done
e2e_stop participant
e2e_pass
