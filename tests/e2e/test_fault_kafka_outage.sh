#!/usr/bin/env bash
# Fault scenario 3: Kafka misbehaves. While the workload runs, the dev
# broker fails produce, fetch and offset-commit requests with retriable
# errors, then every broker goes down for 10 s (connections dropped,
# refused) and comes back, then more errors are injected. sagad, the
# participant and the sender all talk to the same cluster. Once drained,
# every invariant holds: nothing published to Kafka or consumed from it
# was lost or applied twice.
source "$(dirname "${BASH_SOURCE[0]}")/faults/lib.sh"
fault_init fault-kafka-outage 300

fault_on_exit 'echo "up all" >"$SAGA_KAFKA_CONTROL"'
for api in Produce Fetch OffsetCommit; do
    fault_on_exit "echo 'clear $api' >\"\$SAGA_KAFKA_CONTROL\""
done

# retriable errors, by code: 6 NOT_LEADER_FOR_PARTITION, 7 REQUEST_TIMED_OUT,
# 15 COORDINATOR_NOT_AVAILABLE
inject_errors() {
    local n
    local api n code
    for api in Produce Fetch; do
        fault_rand 5 30; n=$FAULT_R
        fault_rand 6 7; code=$FAULT_R
        fault_kafka "error $api $code $n"
        fault_count "kafka_${api,,}_error" "$n"
    done
    fault_rand 1 5; n=$FAULT_R
    fault_kafka "error OffsetCommit 15 $n"
    fault_count kafka_commit_error "$n"
}

e2e_start_participant participant --rules "$(fault_rules)"
e2e_start_sagad sagad
e2e_wait_kafka_group 8 sagad
fault_feed 250

fault_pause 500 2000
inject_errors
fault_pause 500 2000
fault_kafka "down all"
fault_count kafka_all_brokers_down
sleep "$(( FAULT_SOAK ? 30 : 10 ))"
fault_kafka "up all"
fault_pause 500 2000
inject_errors

fault_wait_feed
fault_drain "$FAULT_SAGAS" 240
fault_check
fault_record
e2e_stop sagad
e2e_stop participant
e2e_pass
