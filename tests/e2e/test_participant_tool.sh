#!/usr/bin/env bash
# The participant tool, which the other scenarios measure with, does what
# its rules say: without sagad, commands are sent straight to its Kafka
# topic and RabbitMQ queue, and its replies are read back from the reply
# channels. Checked: success with the built-in result, non-retryable and
# retryable failures chosen by a data field and by attempt, no answer, a
# stale answer plus repeated and duplicate answers, a late answer, a
# redelivered command recorded once and answered the same way, input that
# is not a command ignored, and a clean exit on SIGTERM.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init participant greeting

KAFKA_IN=greetings.$E2E_ID
AMQP_IN=greetings.outbox.$E2E_ID
KREPLY=${E2E_REPLIES_KAFKA#kafka:}
AREPLY=${E2E_REPLIES_AMQP#amqp:/}
e2e_create_topics "$KREPLY"
e2e_send "$E2E_REPLIES_AMQP" --lines /dev/null   # declares the reply queue

e2e_start_participant participant \
    --rule 'greeting.compose:fail:when=$.to=Mallory,code=blocked' \
    --rule 'greeting.compose:retry:attempts=1-2,when=$.to=Bob' \
    --rule 'greeting.compose:succeed:when=$.to=Late,delay=1500ms' \
    --rule 'greeting.deliver:silent:when=$.text=quiet' \
    --rule 'greeting.deliver:succeed:when=$.text=noisy,repeat=2,dupes=1,stale'
e2e_wait_participants

# cmd SAGA STEP DO|UNDO ATTEMPT TYPE REPLYTO DATA
cmd() {
    printf '{"specversion":"1.0","id":"%s/%s/%s/%s","source":"urn:test","type":"%s","sagaid":"%s","sagatype":"greeting","sagastep":"%s","replyto":"%s","data":%s}\n' \
        "$1" "$2" "$3" "$4" "$5" "$1" "$2" "$6" "$7"
}
K=kafka:$KREPLY
A=amqp:/$AREPLY
{
    cmd s1 compose do 1 greeting.compose "$K" '{"to":"Ann"}'
    cmd s2 compose do 1 greeting.compose "$K" '{"to":"Mallory"}'
    cmd s3 compose do 1 greeting.compose "$K" '{"to":"Bob"}'
    cmd s3 compose do 3 greeting.compose "$K" '{"to":"Bob"}'
    cmd s7 compose do 1 greeting.compose "$K" '{"to":"Late"}'
    cmd s1 compose undo 1 greeting.discard "$K" '{"draft_id":"draft-s1"}'
    echo 'this is not a command'
} >"$E2E_WORK/kafka.lines"
{
    cmd s4 deliver do 1 greeting.deliver "$A" '{"text":"quiet"}'
    cmd s5 deliver do 1 greeting.deliver "$A" '{"text":"noisy"}'
} >"$E2E_WORK/amqp.lines"
e2e_send "kafka:$KAFKA_IN" --lines "$E2E_WORK/kafka.lines"
e2e_send "amqp:/$AMQP_IN" --lines "$E2E_WORK/amqp.lines"
e2e_wait_sql "SELECT count(*) = 8 FROM participant_effects" 30 "8 commands recorded"

# The same command again: recorded once, answered again the same way.
cmd s1 compose do 1 greeting.compose "$K" '{"to":"Ann"}' >"$E2E_WORK/again.lines"
e2e_send "kafka:$KAFKA_IN" --lines "$E2E_WORK/again.lines"
e2e_wait_sql "SELECT attempts = 2 FROM participant_effects WHERE command_id = 's1/compose/do/1'" 30 \
    "the redelivered command counted"

# Replies on Kafka: s1 twice, s2, s3 attempts 1 and 3, s7 (late), s1 undo.
timeout 60 kcat -b "$SAGA_KAFKA_BROKERS" -C -t "$KREPLY" -c 7 -f '%s\n' >"$E2E_WORK/kafka.replies" 2>/dev/null ||
    e2e_fail "expected 7 replies on kafka, got $(wc -l <"$E2E_WORK/kafka.replies")"
# Replies on RabbitMQ: none for s4; stale, twice the reply, one duplicate for s5.
"$PARTICIPANT" dump --amqp-queue "$AREPLY" --count 4 --idle-ms 10000 >"$E2E_WORK/amqp.replies" ||
    e2e_fail "expected 4 replies on rabbitmq, got $(wc -l <"$E2E_WORK/amqp.replies")"
"$PARTICIPANT" dump --amqp-queue "$AREPLY" --idle-ms 1000 >"$E2E_WORK/amqp.more"
e2e_expect "more replies on rabbitmq" "$(wc -l <"$E2E_WORK/amqp.more")" 0

reply() { # reply FILE CAUSATION JQ-EXPR: values of the replies to CAUSATION
    jq -r --arg c "$2" "select(.causationid == \$c) | $3" "$1" | paste -sd' '
}
KR=$E2E_WORK/kafka.replies
e2e_expect "s1 outcome" "$(reply "$KR" s1/compose/do/1 .outcome)" "success success"
e2e_expect "s1 result" "$(reply "$KR" s1/compose/do/1 '.data.draft_id + "|" + .data.text' | cut -d' ' -f1-2)" "draft-s1|Hello, Ann!"
e2e_expect "s1 reply ids" "$(reply "$KR" s1/compose/do/1 .id)" "s1/compose/do/1/reply s1/compose/do/1/reply"
e2e_expect "s1 reply attributes" "$(reply "$KR" s1/compose/do/1 '.type + " " + .sagaid + " " + .sagastep' | cut -d' ' -f1-3)" "saga.reply s1 compose"
e2e_expect "s2 failure" "$(reply "$KR" s2/compose/do/1 '.outcome + " " + .data.code + " " + (.data.retryable|tostring)')" "failure blocked false"
e2e_expect "s3 attempt 1" "$(reply "$KR" s3/compose/do/1 '.outcome + " " + (.data.retryable|tostring)')" "failure true"
e2e_expect "s3 attempt 3" "$(reply "$KR" s3/compose/do/3 .outcome)" "success"
e2e_expect "s7 late answer" "$(reply "$KR" s7/compose/do/1 .outcome)" "success"
e2e_expect "s1 compensation" "$(reply "$KR" s1/compose/undo/1 '.outcome + " " + (.data.undone|tostring)')" "success true"
grep -q 's7/compose/do/1 attempt=1 receipt=1 -> success (late)' "${E2E_LOG[participant]}" ||
    e2e_fail "the late answer is not logged as late"

AR=$E2E_WORK/amqp.replies
e2e_expect "s4 silent" "$(reply "$AR" s4/deliver/do/1 .outcome)" ""
e2e_expect "s5 answers" "$(reply "$AR" s5/deliver/do/1 .id)" \
    "s5/deliver/do/1/reply s5/deliver/do/1/reply s5/deliver/do/1/reply/dup1"
e2e_expect "s5 stale answer first" "$(jq -r '.causationid' "$AR" | head -n1)" "s5/deliver/do/1~stale"

# The effects table: one row per command, the first answer kept.
e2e_expect "effects" "$(e2e_sql "SELECT string_agg(command_id || ':' || outcome || ':' || undo || ':' || attempt || ':' || attempts, ' ' ORDER BY command_id) FROM participant_effects")" \
    "s1/compose/do/1:success:false:1:2 s1/compose/undo/1:success:true:1:1 s2/compose/do/1:failure:false:1:1 s3/compose/do/1:failure:false:1:1 s3/compose/do/3:success:false:3:1 s4/deliver/do/1:none:false:1:1 s5/deliver/do/1:success:false:1:1 s7/compose/do/1:success:false:1:1"
e2e_expect "channels recorded" "$(e2e_sql "SELECT string_agg(DISTINCT channel, ' ') FROM participant_effects")" \
    "amqp:/$AMQP_IN kafka:$KAFKA_IN"
grep -q 'not a command' "${E2E_LOG[participant]}" || e2e_fail "the bad input was not logged as ignored"

e2e_stop participant
e2e_pass
