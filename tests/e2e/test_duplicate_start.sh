#!/usr/bin/env bash
# A saga started twice with the same id runs once: the same start event
# again (same event id, over both brokers), another start event with the
# same saga id (even of another type), and a start without sagaid (the event
# id is the saga id) sent twice, all start nothing more; each step of each
# saga takes effect once; sagad counts the duplicates.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init dupstart greeting order_fulfillment

e2e_start_participant participant
e2e_start_sagad sagad

start() { # start EVENT_ID SAGA_ID|- TYPE NAME
    if [[ $2 == - ]]; then
        printf '{"specversion":"1.0","id":"%s","source":"urn:test","type":"saga.start","sagatype":"%s","data":{"name":"%s","order_id":"o","customer_id":"c","amount":1,"items":[]}}\n' "$1" "$3" "$4"
    else
        printf '{"specversion":"1.0","id":"%s","source":"urn:test","type":"saga.start","sagatype":"%s","sagaid":"%s","data":{"name":"%s","order_id":"o","customer_id":"c","amount":1,"items":[]}}\n' "$1" "$3" "$2" "$4"
    fi
}
e2e_send "$E2E_IN_KAFKA" --lines <(start e1 s-1 greeting first; start e1 s-1 greeting first; start e-noid - greeting noid)
e2e_wait_sql "SELECT count(*) = 2 FROM sagas" 60 "two sagas started"
e2e_send "$E2E_IN_AMQP" --lines <(start e2 s-1 greeting second; start e1 s-1 greeting first; start e3 s-1 order_fulfillment third; start e-noid - greeting noid)
e2e_send "$E2E_IN_KAFKA" --lines <(start e-noid - greeting noid)
e2e_wait_finished 2 60
# Duplicates leave no row: wait for sagad to have counted them: e1 again
# (kafka), e2, e1, e3, e-noid (rabbitmq), e-noid (kafka) = 6.
for _ in $(seq 100); do
    (($(e2e_metric sagad sagad_duplicates_total) >= 6)) && break
    sleep 0.3
done
e2e_check_invariants

e2e_expect "sagas" "$(e2e_sql "SELECT string_agg(id || ':' || type || ':' || status, ' ' ORDER BY id) FROM sagas")" \
    "e-noid:greeting:completed s-1:greeting:completed"
e2e_expect "s-1 input" "$(e2e_sql "SELECT data->>'to' FROM participant_effects WHERE command_id = 's-1/compose/do/1'")" first
e2e_expect "commands" "$(e2e_sql "SELECT count(*) FROM participant_effects")" 4
e2e_expect "starts applied per saga" \
    "$(e2e_sql "SELECT string_agg(n::text, ',') FROM (SELECT count(*) n FROM saga_history WHERE event = 'saga.running' GROUP BY saga_id) x")" "1,1"
dups=$(e2e_metric sagad sagad_duplicates_total)
((dups == 6)) || e2e_fail "sagad counted $dups duplicate starts, expected 6"
e2e_log "duplicates counted by sagad: $dups"
e2e_figures
e2e_pass
