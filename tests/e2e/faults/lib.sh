# faults/lib.sh: what the fault-injection scenarios (tests/e2e/test_fault_*.sh)
# share, on top of tests/e2e/lib.sh (sourced first, here).
#
# A scenario: fault_init NAME; start participant(s) with fault_rules and
# sagad(s); fault_feed sends the mixed workload in the background while the
# scenario injects its faults (fault_count records each); fault_wait_feed;
# fault_drain waits until every saga is finished; fault_check runs the
# invariant checker (check_invariants.sh) and fault_record writes the
# scenario's figures for the suite summary (summary.sh).
#
# Knobs:
#   FAULT_SEED    seed of every random choice of the scenario (printed at the
#                 start; set it to replay a run)
#   FAULT_SAGAS   sagas of the workload (each scenario has its default)
#   SOAK=1        five times the default workload, longer fault phases
#   FAULT_RESULTS folder of the per-scenario figures
#                 (default <build>/fault-results)

# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

FAULT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FAULT_RESULTS=${FAULT_RESULTS:-$E2E_BIN/fault-results}
FAULT_SOAK=${SOAK:-0}
declare -A FAULT_COUNTS=()

# The workload: per chunk of 20 sagas, 8 orders (2 whose charge is refused:
# they compensate; 2 whose credit check fails once, retryably), 6 greetings
# (1 whose delivery is refused), 6 trips (1 whose car rental is refused:
# the flight and the hotel are cancelled). Starts go through Kafka and
# RabbitMQ in turn.
FAULT_CHUNK=20
FAULT_ORDER_OK='{"order_id":"o-{n}","customer_id":"c-{n}","amount":{n}5,"items":[{"sku":"sku-{n}","qty":1}]}'
FAULT_ORDER_BAD='{"order_id":"o-{n}","customer_id":"c-{n}","amount":9999{n},"items":[{"sku":"sku-{n}","qty":2}]}'
FAULT_ORDER_RETRY='{"order_id":"o-{n}","customer_id":"retry","amount":{n}7,"items":[{"sku":"sku-{n}","qty":3}]}'
FAULT_GREET_OK='{"name":"Friend {n}"}'
FAULT_GREET_BAD='{"name":"Nobody"}'
FAULT_TRIP_OK='{"traveller":{"name":"T{n}","email":"t{n}@example.com"},"from":"CDG","to":"LIS","depart_on":"2025-06-01","return_on":"2025-06-08","card_token":"tok-{n}"}'
FAULT_TRIP_BAD='{"traveller":{"name":"T{n}","email":"t{n}@example.com"},"from":"CDG","to":"NOWHERE","depart_on":"2025-06-01","return_on":"2025-06-08","card_token":"tok-{n}"}'

# fault_init NAME DEFAULT_SAGAS [SAGA...]: seed, workload size, test setup.
fault_init() {
    local name=$1 default=$2
    shift 2
    FAULT_SEED=${FAULT_SEED:-$(( ($(date +%s%N) / 1000) % 1000000000 ))}
    FAULT_RNG=$FAULT_SEED
    local s per
    FAULT_CHUNK=0
    for s in "${FAULT_KINDS[@]}" "${FAULT_EXTRA[@]}"; do
        read -r _ _ per _ <<<"$s"
        FAULT_CHUNK=$((FAULT_CHUNK + per))
    done
    FAULT_SAGAS=${FAULT_SAGAS:-$default}
    ((FAULT_SOAK)) && FAULT_SAGAS=$((FAULT_SAGAS * 5))
    # whole chunks only
    FAULT_SAGAS=$(( (FAULT_SAGAS + FAULT_CHUNK - 1) / FAULT_CHUNK * FAULT_CHUNK ))
    e2e_init "$name" "$@"
    trap fault_exit EXIT
    fault_long_timeouts
    e2e_log "FAULT_SEED=$FAULT_SEED (replay: FAULT_SEED=$FAULT_SEED bash $0), $FAULT_SAGAS sagas$( ((FAULT_SOAK)) && echo ', soak')"
    FAULT_T0=$(date +%s)
}

# Step timeouts of the example definitions raised to 60 s: the faults
# stall sagad for seconds (a Kafka group frees a dead member's partitions
# only after its session timeout), and a step that times out three times in
# a row is compensated, correctly but not as the workload expects. The
# scenario about timeouts brings its own definitions (faults/sagas/).
fault_long_timeouts() {
    local f n
    for n in greeting order_fulfillment travel_booking; do
        f=$E2E_WORK/sagas/$n.json
        [[ -f $f ]] || continue
        jq '(.defaults.timeout) = "60s" | (.. | objects | select(has("command")) | .timeout) = "60s"' \
            "$f" >"$f.tmp" && mv "$f.tmp" "$f"
    done
}

# fault_on_exit COMMAND: run COMMAND (a string, eval'd) when the test ends
# however it ends, before e2e_cleanup: for faults of the shared stack that
# must not outlive the test (Kafka brokers down, injected errors).
FAULT_ON_EXIT=()
fault_on_exit() {
    FAULT_ON_EXIT+=("$1")
}

fault_exit() {
    local rc=$? c
    set +e   # a failing hook must not skip the cleanup
    for c in "${FAULT_ON_EXIT[@]}"; do eval "$c"; done
    (exit "$rc")
    e2e_cleanup
}

# fault_kafka LINE: a control line for the Kafka dev broker (its FIFO,
# SAGA_KAFKA_CONTROL); fails the test unless the broker logs it applied.
fault_kafka() {
    local log=${SAGA_RUN_DIR:?SAGA_RUN_DIR is not set}/kafka.log before
    [[ -p ${SAGA_KAFKA_CONTROL:-} ]] || e2e_fail "no Kafka dev broker control FIFO (SAGA_KAFKA_CONTROL)"
    before=$(grep -c "applied: $1\$" "$log" 2>/dev/null || true)
    echo "$1" >"$SAGA_KAFKA_CONTROL"
    for _ in $(seq 50); do
        (($(grep -c "applied: $1\$" "$log" 2>/dev/null || true) > before)) && return 0
        sleep 0.1
    done
    e2e_fail "the Kafka dev broker did not apply '$1' (see $log)"
}

# fault_rabbitmqctl ARGS...: rabbitmqctl against the stack's node, with
# its node name, cookie and ports (deploy/local/common.sh).
fault_rabbitmqctl() {
    (
        set +u
        # shellcheck source=../../../deploy/local/common.sh
        source "$E2E_SRC/deploy/local/common.sh"
        load_ports
        rmq rabbitmqctl -q -n "$RMQ_NODE" "$@"
    )
}

# fault_start_participant_on NAME REGEX [ARGS...]: like
# e2e_start_participant, on the command channels matching REGEX only.
FAULT_CHANNELS_REGEX=""
e2e_channels() {
    jq -r '.. | objects | .channel? // empty' "$E2E_WORK"/sagas/*.json | sort -u |
        grep -E -- "${FAULT_CHANNELS_REGEX:-.}" || true
}
fault_start_participant_on() {
    local name=$1
    FAULT_CHANNELS_REGEX=$2
    shift 2
    e2e_start_participant "$name" "$@"
    FAULT_CHANNELS_REGEX=""
}

# fault_start_proxy: a tcp-cut-proxy in front of the stack's PostgreSQL;
# sets FAULT_PROXY_DB, this test's database URL through the proxy.
fault_start_proxy() {
    local bin=$E2E_BIN/tests/tools/tcp-cut-proxy pid
    [[ -x $bin ]] || e2e_fail "no program at $bin: build first"
    "$bin" --target "127.0.0.1:${SAGA_PG_PORT:?SAGA_PG_PORT is not set}" \
        --port-file "$E2E_WORK/proxy.port" --control "$E2E_WORK/proxy.ctl" \
        --stats "$E2E_WORK/proxy.stats" 2>"$E2E_WORK/proxy.log" &
    pid=$!
    E2E_PIDS+=("$pid")
    E2E_PID[proxy]=$pid
    E2E_LOG[proxy]=$E2E_WORK/proxy.log
    for _ in $(seq 100); do
        [[ -s $E2E_WORK/proxy.port ]] && break
        kill -0 "$pid" 2>/dev/null || e2e_fail "tcp-cut-proxy exited at start"
        sleep 0.05
    done
    [[ -s $E2E_WORK/proxy.port ]] || e2e_fail "tcp-cut-proxy wrote no port"
    FAULT_PROXY_DB="postgresql://saga@127.0.0.1:$(cat "$E2E_WORK/proxy.port")/$E2E_DBNAME"
    e2e_log "tcp-cut-proxy on port $(cat "$E2E_WORK/proxy.port") (pid $pid)"
}

# fault_proxy LINE: a control line for the proxy ("cut", "commit N").
fault_proxy() {
    echo "$1" >"$E2E_WORK/proxy.ctl"
}

# fault_proxy_stat KEY: a figure of the proxy's stats file.
fault_proxy_stat() {
    sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" "$E2E_WORK/proxy.stats"
}

# fault_rand LOW HIGH: sets FAULT_R to a number in [LOW, HIGH] drawn from
# the scenario's generator (FAULT_RNG, seeded with FAULT_SEED). Not through
# $(...): a subshell would not advance the generator (and bash reseeds
# RANDOM in subshells), so the choices could not be replayed.
fault_rand() {
    FAULT_RNG=$(( FAULT_RNG * 6364136223846793005 + 1442695040888963407 ))
    FAULT_R=$(( $1 + ((FAULT_RNG >> 33) & 0x7fffffff) % ($2 - $1 + 1) ))
}

# fault_pause LOW_MS HIGH_MS: sleeps a random time in that range.
fault_pause() {
    fault_rand "$1" "$2"
    fault_sleep_ms "$FAULT_R"
}

# fault_sleep_ms MS
fault_sleep_ms() {
    sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"
}

# fault_count KIND [N]: records N (default 1) injected faults of KIND.
fault_count() {
    FAULT_COUNTS[$1]=$(( ${FAULT_COUNTS[$1]:-0} + ${2:-1} ))
    e2e_log "fault: $1 (${FAULT_COUNTS[$1]} so far)"
}

# fault_rules [--all JSON] [RULE...]: the participant's rules for the
# workload (a JSON file; prints its path): the RULEs given (JSON objects)
# first, as rules are tried in order, then the workload's, then one that
# makes every other command succeed. --all merges JSON (an object such as
# {"repeat": 2}) into each of them.
fault_rules() {
    local file=$E2E_WORK/rules.json all='{}' extra
    if [[ ${1:-} == --all ]]; then all=$2; shift 2; fi
    extra=$(printf '%s\n' "$@" | jq -s '.')
    jq -n --argjson extra "$extra" --argjson all "$all" '$extra + [
        {"type": "payment.charge", "action": "fail", "when": "$.amount>=99990",
         "code": "card_declined", "message": "declined"},
        {"type": "credit.check", "action": "retry", "attempts": "1", "when": "$.customer=retry",
         "code": "busy", "message": "try again"},
        {"type": "greeting.deliver", "action": "fail", "when": "$.text=Hello, Nobody!",
         "code": "bounced", "message": "no such address"},
        {"type": "travel.car.rent", "action": "fail", "when": "$.pick_up_at=NOWHERE",
         "code": "no_cars", "message": "no cars there"},
        {"type": "*", "action": "succeed"}
    ] | map(. + $all)' >"$file"
    echo "$file"
}

# The workload, per chunk: "TYPE PREFIX COUNT DATA" lines. A scenario may
# add kinds to FAULT_EXTRA (same form) before fault_init, and their
# expected statuses to FAULT_EXPECTED_EXTRA.
FAULT_KINDS=(
    "order_fulfillment order-ok 4 $FAULT_ORDER_OK"
    "order_fulfillment order-bad 2 $FAULT_ORDER_BAD"
    "order_fulfillment order-retry 2 $FAULT_ORDER_RETRY"
    "greeting greet-ok 5 $FAULT_GREET_OK"
    "greeting greet-bad 1 $FAULT_GREET_BAD"
    "travel_booking trip-ok 5 $FAULT_TRIP_OK"
    "travel_booking trip-bad 1 $FAULT_TRIP_BAD"
)
FAULT_EXTRA=()
FAULT_EXPECTED_EXTRA=""

# The expected final status of each saga of the workload, by id prefix
# (check_invariants.sh --expected).
fault_expected() {
    printf '%s\n' "order-ok completed" "order-retry completed" "order-bad compensated" \
        "greet-ok completed" "greet-bad compensated" "trip-ok completed" "trip-bad compensated"
    printf '%s' "$FAULT_EXPECTED_EXTRA"
}

# Writes the workload's start events, one file of FAULT_CHUNK lines per
# chunk, in $E2E_WORK/feed/. Saga ids are <prefix>-<n>, n counting from 1
# per prefix; the event id is the saga id, so a start sent again is a
# duplicate that sagad ignores.
fault_workload() {
    local k n i chunks=$((FAULT_SAGAS / FAULT_CHUNK)) s type prefix per data id
    mkdir -p "$E2E_WORK/feed"
    for ((k = 0; k < chunks; k++)); do
        for s in "${FAULT_KINDS[@]}" "${FAULT_EXTRA[@]}"; do
            read -r type prefix per data <<<"$s"
            for ((i = 1; i <= per; i++)); do
                n=$((k * per + i))
                id=$prefix-$n
                printf '{"specversion":"1.0","id":"%s","source":"urn:fault-suite","type":"saga.start","sagatype":"%s","sagaid":"%s","datacontenttype":"application/json","data":%s}\n' \
                    "$id" "$type" "$id" "${data//\{n\}/$n}"
            done
        done >"$E2E_WORK/feed/chunk-$k.jsonl"
    done
}

# fault_send FILE CHANNEL: sends the lines of FILE, again until the broker
# has them all.
fault_send() {
    local tries
    for ((tries = 1; ; tries++)); do
        "$PARTICIPANT" send --quiet --to "$2" --lines "$1" 2>>"$E2E_WORK/feed.err" && return 0
        ((tries < 60)) || return 1
        sleep 1
    done
}

# fault_feed [PAUSE_MS [FROM TO]]: sends the workload's chunks FROM..TO
# (default all), PAUSE_MS (default 200) apart, alternating Kafka and
# RabbitMQ, in the background (FAULT_FEED_PID).
fault_feed() {
    local pause=${1:-200} from=${2:-0} to=${3:-$((FAULT_SAGAS / FAULT_CHUNK - 1))}
    [[ -d $E2E_WORK/feed ]] || fault_workload
    (
        set +e
        local k via
        for ((k = from; k <= to; k++)); do
            if ((k % 2)); then via=$E2E_IN_AMQP; else via=$E2E_IN_KAFKA; fi
            fault_send "$E2E_WORK/feed/chunk-$k.jsonl" "$via" ||
                { echo "chunk $k failed" >>"$E2E_WORK/feed.err"; exit 1; }
            echo $(((k + 1) * FAULT_CHUNK)) >"$E2E_WORK/fed"
            fault_sleep_ms "$pause"
        done
    ) &
    FAULT_FEED_PID=$!
    E2E_PIDS+=("$FAULT_FEED_PID")
    e2e_log "feeding sagas $((from * FAULT_CHUNK + 1))..$(((to + 1) * FAULT_CHUNK)) in chunks of $FAULT_CHUNK"
}

# How many sagas the feeder has handed to the brokers so far.
fault_fed() {
    cat "$E2E_WORK/fed" 2>/dev/null || echo 0
}

fault_feed_running() {
    kill -0 "$FAULT_FEED_PID" 2>/dev/null
}

fault_wait_feed() {
    local rc=0
    wait "$FAULT_FEED_PID" || rc=$?
    ((rc == 0)) || { tail -n 20 "$E2E_WORK/feed.err" >&2; e2e_fail "the feeder failed"; }
    e2e_log "$(fault_fed) sagas sent"
}

# fault_drain COUNT TIMEOUT: until COUNT sagas exist, none is running or
# compensating, and the outbox is empty.
fault_drain() {
    local n=$1 timeout=$2
    e2e_wait_finished "$n" "$timeout"
    e2e_wait_sql "SELECT count(*) = 0 FROM outbox" "$timeout" "the outbox to drain"
    e2e_log "drained: $(e2e_sql "SELECT string_agg(status || '=' || n, ' ' ORDER BY status) FROM (SELECT status, count(*) n FROM sagas GROUP BY 1) x")"
}

# fault_restart_sagad NAME [JSON]: starts NAME again after it died.
fault_restart_sagad() {
    local pid=${E2E_PID[$1]}
    wait "$pid" 2>/dev/null || true
    e2e_start_sagad "$@"
}

# fault_kill NAME: SIGKILL, and reaps it.
fault_kill() {
    local pid=${E2E_PID[$1]}
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# fault_alive NAME
fault_alive() {
    kill -0 "${E2E_PID[$1]}" 2>/dev/null
}

# fault_check [CHECKER OPTIONS...]: the invariant checker over this test's
# database, with the workload's expected statuses; fails the test when any
# invariant is broken. Its figures go to FAULT_CHECK_FIGURES.
fault_check() {
    local out=$E2E_WORK/invariants.txt rc=0
    fault_expected >"$E2E_WORK/expected.txt"
    bash "$FAULT_DIR/check_invariants.sh" --db "$E2E_DB" --sagas "$FAULT_SAGAS" \
        --expected "$E2E_WORK/expected.txt" "$@" >"$out" 2>&1 || rc=$?
    sed 's/^/    /' "$out"
    ((rc == 0)) || e2e_fail "invariants broken (seed $FAULT_SEED)"
    FAULT_CHECK_FIGURES=$(sed -n 's/^FIGURES //p' "$out" | tail -n 1)
}

# fault_record: the scenario's line for the suite summary.
fault_record() {
    local kinds="" k
    for k in $(printf '%s\n' "${!FAULT_COUNTS[@]}" | sort); do
        kinds+="${kinds:+,}$k=${FAULT_COUNTS[$k]}"
    done
    mkdir -p "$FAULT_RESULTS"
    printf 'scenario=%s seed=%s %s faults=%s time=%ss\n' "$E2E_NAME" "$FAULT_SEED" \
        "$FAULT_CHECK_FIGURES" "${kinds:-none}" "$(($(date +%s) - FAULT_T0))" \
        >"$FAULT_RESULTS/$E2E_NAME.txt"
    e2e_log "RESULT $(cat "$FAULT_RESULTS/$E2E_NAME.txt")"
}

# fault_wait_exit NAME TIMEOUT: waits for NAME to exit; sets FAULT_EXIT to
# its exit status, or to "running" when it still runs after TIMEOUT s.
fault_wait_exit() {
    local pid=${E2E_PID[$1]} i
    FAULT_EXIT=0
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        FAULT_EXIT=running
        return 0
    fi
    wait "$pid" || FAULT_EXIT=$?
}
