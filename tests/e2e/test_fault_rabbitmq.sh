#!/usr/bin/env bash
# Fault scenario 4: RabbitMQ misbehaves. At first no participant has
# declared the greetings' delivery queue, so those commands are unroutable:
# RabbitMQ returns them (mandatory publish) and sagad must keep them in its
# outbox and retry, not lose them. While the workload runs, every RabbitMQ
# connection is closed by the broker (rabbitmqctl close_all_connections),
# the missing queue appears (a second participant declares it), RabbitMQ
# is restarted, and connections are closed once more. Once drained, every
# invariant holds, and the unroutable commands were delivered after all.
source "$(dirname "${BASH_SOURCE[0]}")/faults/lib.sh"
fault_init fault-rabbitmq 300

late_queue="amqp:/greetings.outbox.$E2E_ID"
fault_start_participant_on participant "^(kafka:|amqp:[^/]|amqp:/(fraud|credit|car))" \
    --rules "$(fault_rules)"
e2e_start_sagad sagad
e2e_wait_kafka_group 8 sagad
fault_feed 300

close_all() {
    fault_rabbitmqctl close_all_connections "fault test" >/dev/null ||
        e2e_fail "rabbitmqctl close_all_connections failed"
    fault_count rabbitmq_connections_closed
}

# The unroutable deliveries are kept, with the broker's refusal recorded.
e2e_wait_sql "SELECT count(*) > 0 FROM outbox WHERE channel = '$late_queue' AND attempts > 0 AND last_error LIKE 'returned by the broker%'" \
    60 "unroutable greeting deliveries kept in the outbox with the broker's refusal"
e2e_log "unroutable deliveries waiting: $(e2e_sql "SELECT count(*) || ', ' || min(last_error) FROM outbox WHERE channel = '$late_queue' AND last_error IS NOT NULL")"
fault_count unroutable_publish "$(e2e_sql "SELECT count(*) FROM outbox WHERE channel = '$late_queue'")"

fault_pause 0 1500
close_all
fault_pause 500 1500
fault_start_participant_on late_participant "^${late_queue}\$" --rules "$(fault_rules)"
e2e_wait_participants

fault_pause 0 2000
sh -c "$SAGA_AMQP_RESTART_CMD" >"$E2E_WORK/rabbitmq-restart.log" 2>&1 ||
    { cat "$E2E_WORK/rabbitmq-restart.log" >&2; e2e_fail "RabbitMQ restart failed"; }
fault_count rabbitmq_restart
fault_pause 500 2000
close_all

fault_wait_feed
fault_drain "$FAULT_SAGAS" 240
fault_check
e2e_expect "greetings delivered through the late queue" \
    "$(e2e_sql "SELECT count(*) FROM participant_effects WHERE channel = '$late_queue'")" \
    "$(e2e_sql "SELECT count(*) FROM saga_history WHERE event = 'command.sent' AND detail->>'channel' = '$late_queue'")"
fault_record
e2e_stop sagad
e2e_stop participant
e2e_stop late_participant
e2e_pass
