#!/usr/bin/env bash
# No secret reaches sagad's log, whoever writes the text: sagad itself (the
# configuration it prints at start, the connection it reports), libpq,
# rabbitmq-c's server replies or librdkafka (its debug output included).
# First run: a database URL with a password (the stack trusts local
# connections, so it still connects), a RabbitMQ URL with a wrong password
# (the login is refused, again and again), and SASL settings in
# kafka.properties, with librdkafka's debug contexts on; /readyz answers 503
# naming RabbitMQ. Second run: a database URL whose password libpq quotes
# in its own error message (a bad %-escape). Checked: none of the secrets,
# as written or decoded, is in either log, while the lines that would have
# shown them are there, with *** in their place.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init obs-secrets greeting

DB_SECRET=DbPassw0rd-$RANDOM$RANDOM
AMQP_SECRET=AmqpWr0ng-$RANDOM$RANDOM
SASL_SECRET=SaslS3cret-$RANDOM$RANDOM
KEY_SECRET=SslKeyS3cret-$RANDOM$RANDOM
BAD_SECRET=Bad%zzS3cret-$RANDOM$RANDOM

# with_password URL SECRET: the URL with SECRET as the password of its user.
with_password() {
    [[ $1 =~ ^([a-z]+://)([^:@/]+)(:[^@/]*)?@(.*)$ ]] || e2e_fail "no user in URL $1 to give a password to"
    echo "${BASH_REMATCH[1]}${BASH_REMATCH[2]}:$2@${BASH_REMATCH[4]}"
}
[[ $E2E_DB == *://* ]] || e2e_fail "this test needs SAGA_DATABASE_URL as a URL"

# start_sagad NAME JSON: sagad with the test's configuration and JSON merged
# over it, without waiting for it to be ready.
start_sagad() {
    local name=$1 port cfg log
    port=$(e2e_free_port) || e2e_fail "no free port"
    cfg=$E2E_WORK/$name.json
    log=$E2E_WORK/$name.log
    e2e_config "$cfg" "$port" "$2"
    e2e_create_topics "${E2E_IN_KAFKA#kafka:}" "${E2E_REPLIES_KAFKA#kafka:}" "$E2E_EVENTS"
    e2e_unset_saga_env
    env "${E2E_UNSET[@]}" "$SAGAD" --config "$cfg" >"$log" 2>&1 &
    E2E_PIDS+=("$!")
    E2E_PID[$name]=$!
    E2E_LOG[$name]=$log
    declare -g "E2E_PORT_$name=$port"
}

# wait_log NAME PATTERN WHAT: until the log of NAME has a line matching PATTERN.
wait_log() {
    for _ in $(seq 150); do
        grep -qE "$2" "${E2E_LOG[$1]}" && return 0
        sleep 0.2
    done
    e2e_fail "$1 never logged $3"
}

# no_secret NAME SECRET...: fails when the log of NAME holds any of them.
no_secret() {
    local name=$1 s
    shift
    for s in "$@"; do
        ! grep -qF -- "$s" "${E2E_LOG[$name]}" || e2e_fail "the log of $name shows the secret '$s': $(grep -F -- "$s" "${E2E_LOG[$name]}" | head -n 2)"
    done
}

# ---- first run: a password everywhere ----
DB_URL=$(with_password "$E2E_DB" "$DB_SECRET")
AMQP_URL=$(with_password "$SAGA_AMQP_URL" "$AMQP_SECRET")
start_sagad leaky "$(jq -cn --arg db "$DB_URL" --arg amqp "$AMQP_URL" --arg sasl "$SASL_SECRET" --arg key "$KEY_SECRET" '{
    database_url: $db, amqp: {url: $amqp},
    kafka: {properties: {"security.protocol": "sasl_plaintext", "sasl.mechanisms": "PLAIN",
                         "sasl.username": "sagad", "sasl.password": $sasl,
                         "ssl.key.password": $key, "debug": "conf,security,broker"}},
    log: {format: "json", level: "debug"}}')"
wait_log leaky '"msg":"connected to the database postgresql://[^:]+:\*\*\*@' "the database it connected to"
wait_log leaky 'cannot log in to rabbitmq' "the refused rabbitmq login"
wait_log leaky '"msg":"kafka ' "librdkafka's own lines"
for _ in $(seq 100); do
    code=$(curl -s -o "$E2E_WORK/readyz" -w '%{http_code}' "http://127.0.0.1:$E2E_PORT_leaky/readyz" || true)
    [[ $code == 503 ]] && grep -q 'rabbitmq: ' "$E2E_WORK/readyz" && break
    sleep 0.2
done
[[ $code == 503 ]] || e2e_fail "/readyz answered $code with rabbitmq refusing the login"
no_secret leaky "$AMQP_SECRET" # /readyz's body is not a log line, but it must not show it either
sleep 3 # librdkafka and the rabbitmq consumer retry: more lines that could leak
e2e_stop leaky
no_secret leaky "$DB_SECRET" "$AMQP_SECRET" "$SASL_SECRET" "$KEY_SECRET"
grep -qF "$AMQP_SECRET" "$E2E_WORK/readyz" && e2e_fail "/readyz shows the rabbitmq password"
grep -qF '\"sasl.password\":\"***\"' "${E2E_LOG[leaky]}" || e2e_fail "the configuration line does not mask sasl.password"
e2e_log "first run: $(wc -l <"${E2E_LOG[leaky]}") log lines, no secret in them"

# ---- second run: a password that libpq quotes ----
start_sagad quoted "$(jq -cn --arg db "$(with_password "$E2E_DB" "$BAD_SECRET")" '{database_url: $db, log: {format: "text"}}')"
wait_log quoted 'invalid percent-encoded token' "libpq's complaint about the URL"
e2e_stop quoted
no_secret quoted "$BAD_SECRET"
grep -q 'invalid percent-encoded token: "\*\*\*"' "${E2E_LOG[quoted]}" ||
    e2e_fail "libpq's message is not there with the password masked"
e2e_log "second run: libpq's message logged with the password masked"
e2e_pass
