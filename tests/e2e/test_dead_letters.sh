#!/usr/bin/env bash
# Every kind of malformed message, sent through Kafka and through RabbitMQ,
# ends in the dead-letter table with its reason, stored whole (byte for
# byte) and counted, and is acknowledged on its broker (not delivered
# again); sagad keeps running and ready, and a good saga sent afterwards
# completes. Kinds: not JSON, not CloudEvents, unsupported specversion,
# missing attributes (id; causationid of a reply), an unsupported type, an
# unknown sagatype, an unknown sagaid (abort; reply), too large (limit set to
# 64 KiB for the test), not UTF-8.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init deadletters greeting

e2e_start_participant participant
e2e_start_sagad sagad '{"max_message_bytes": 65536}'

# One message per line: "pattern of the reason|message". Each message is
# sent as it is written (the non-UTF-8 one gets its bad bytes from printf).
big=$(head -c 70000 /dev/zero | tr '\0' 'x')
{
    echo 'not JSON%|this is not json {'
    echo 'missing attribute%|{"hello":"world"}'
    echo '%specversion%|{"specversion":"0.3","id":"v03","source":"urn:t","type":"saga.start","sagatype":"greeting"}'
    echo 'missing attribute "id"%|{"specversion":"1.0","source":"urn:t","type":"saga.start","sagatype":"greeting","data":{}}'
    echo '%causationid%|{"specversion":"1.0","id":"r-nocause","source":"urn:t","type":"saga.reply","sagaid":"x","sagastep":"compose","outcome":"success","data":{}}'
    echo 'unsupported type%|{"specversion":"1.0","id":"t-unknown","source":"urn:t","type":"order.created","data":{}}'
    echo 'unknown sagatype%|{"specversion":"1.0","id":"st-unknown","source":"urn:t","type":"saga.start","sagatype":"no_such_saga","data":{}}'
    echo 'unknown sagaid%|{"specversion":"1.0","id":"ab-unknown","source":"urn:t","type":"saga.abort","sagaid":"nobody","data":{"reason":"x"}}'
    echo 'unknown sagaid%|{"specversion":"1.0","id":"re-unknown","source":"urn:t","type":"saga.reply","sagaid":"nobody","sagastep":"compose","causationid":"nobody/compose/do/1","outcome":"success","data":{}}'
    echo "%exceeds the limit%|{\"specversion\":\"1.0\",\"id\":\"big\",\"source\":\"urn:t\",\"type\":\"saga.start\",\"sagatype\":\"greeting\",\"data\":{\"name\":\"$big\"}}"
    printf 'not UTF-8%%|{"specversion":"1.0","id":"bad-\xff\xfe","source":"urn:t","type":"saga.start","sagatype":"greeting","data":{}}\n'
} >"$E2E_WORK/cases"
KINDS=$(wc -l <"$E2E_WORK/cases")
cut -d'|' -f2- "$E2E_WORK/cases" >"$E2E_WORK/messages"
e2e_send "$E2E_IN_KAFKA" --lines "$E2E_WORK/messages"
e2e_send "$E2E_IN_AMQP" --lines "$E2E_WORK/messages"
e2e_wait_sql "SELECT count(*) = $((2 * KINDS)) FROM dead_letters" 60 "$((2 * KINDS)) dead letters"

e2e_expect "dead letters per channel" \
    "$(e2e_sql "SELECT string_agg(channel || '=' || n, ' ' ORDER BY channel) FROM (SELECT channel, count(*) n FROM dead_letters GROUP BY 1) x")" \
    "amqp:/saga.commands.$E2E_ID=$KINDS kafka:saga.commands.$E2E_ID=$KINDS"
i=0
while IFS= read -r line; do
    i=$((i + 1))
    pattern=${line%%|*}
    msg=${line#*|}
    # the reason, and the message stored whole, on both channels
    got=$(e2e_sql "SELECT count(*) FROM dead_letters WHERE reason LIKE '$pattern' AND md5(raw) = '$(printf '%s' "$msg" | md5sum | cut -d' ' -f1)'")
    [[ $got == 2 ]] || e2e_fail "message $i: $got dead letters with reason '$pattern' and the same bytes, expected 2 (reasons: $(e2e_sql "SELECT string_agg(DISTINCT reason, ' | ') FROM dead_letters"))"
    e2e_log "dead-lettered twice: $(e2e_sql "SELECT reason FROM dead_letters WHERE md5(raw) = '$(printf '%s' "$msg" | md5sum | cut -d' ' -f1)' LIMIT 1" | cut -c1-100)"
done <"$E2E_WORK/cases"

# Counted, listed, and sagad still serves.
e2e_expect "dead letters counted" "$(e2e_metric sagad sagad_dead_letters_total)" $((2 * KINDS))
"$SAGACTL" --db "$E2E_DB" dead-letters list --json >"$E2E_WORK/dl.json" || e2e_fail "sagactl dead-letters list failed"
e2e_expect "dead letters listed" "$(jq 'length' "$E2E_WORK/dl.json")" $((2 * KINDS))
e2e_expect "listed fields" "$(jq -r '[.[0] | has("id", "received_at", "channel", "reason")] | all' "$E2E_WORK/dl.json")" true
e2e_expect "sagas started by bad messages" "$(e2e_sql "SELECT count(*) FROM sagas")" 0
kill -0 "${E2E_PID[sagad]}" || e2e_fail "sagad died"
e2e_expect "sagad ready" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$E2E_PORT_sagad/readyz")" 200
e2e_send "$E2E_IN_AMQP" --count 1 --sagatype greeting --prefix after --data '{"name":"still here"}'
e2e_send "$E2E_IN_KAFKA" --count 1 --sagatype greeting --prefix after-k --data '{"name":"still here"}'
e2e_wait_finished 2 60
e2e_expect "good sagas after the bad messages" "$(e2e_sql "SELECT count(*) FROM sagas WHERE status = 'completed'")" 2
e2e_check_invariants

# Acknowledged: after a restart of sagad nothing comes back.
e2e_stop sagad
e2e_start_sagad sagad2 '{"max_message_bytes": 65536}'
e2e_send "$E2E_IN_KAFKA" --count 1 --sagatype greeting --prefix marker --data '{"name":"marker"}'
e2e_wait_finished 3 60
e2e_expect "dead letters after a restart" "$(e2e_sql "SELECT count(*) FROM dead_letters")" $((2 * KINDS))
e2e_figures
e2e_pass
