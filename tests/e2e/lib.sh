# lib.sh: what the end-to-end scenarios share. Sourced by tests/e2e/test_*.sh.
#
# Each test runs against the local stack (deploy/local/start.sh; the env file
# exported SAGA_DATABASE_URL, SAGA_KAFKA_BROKERS, SAGA_AMQP_URL) but shares
# nothing with other tests:
#   - a fresh database on the stack's server, migrated with sagactl;
#   - its own copy of the saga definitions, every channel renamed with the
#     test's id (kafka:inventory.commands -> kafka:inventory.commands.<id>,
#     amqp:/q -> amqp:/q.<id>, amqp:ex/key -> amqp:ex.<id>/key), and its own
#     sagad input, reply and event channels and consumer groups;
#   - sagad and participant processes it starts and, on any exit, stops
#     (only those: by the pids it recorded), then the database and the
#     RabbitMQ queues and exchanges are removed. The work folder (configs,
#     logs) is kept when the test failed, and printed.
#
# Helpers: e2e_init, e2e_add_saga, e2e_start_sagad, e2e_start_participant,
# e2e_send, e2e_sql, e2e_wait_sql, e2e_wait_finished, e2e_check_invariants,
# e2e_figures, e2e_stop, e2e_fail, e2e_pass.
# Knobs: E2E_KEEP=1 keeps the database and work folder even on success.

set -euo pipefail

E2E_SRC=${SAGA_SOURCE_DIR:?SAGA_SOURCE_DIR is not set}
E2E_BIN=${SAGA_BINARY_DIR:?SAGA_BINARY_DIR is not set}
SAGAD=$E2E_BIN/orchestrator/sagad
SAGACTL=$E2E_BIN/orchestrator/sagactl
PARTICIPANT=$E2E_BIN/tests/tools/participant
export SAGA_MIGRATIONS_DIR=$E2E_SRC/migrations

E2E_PIDS=()          # every process this test started, in order
E2E_PARTICIPANTS=()  # participants started and not yet seen ready
declare -A E2E_PID   # name -> pid
declare -A E2E_LOG   # name -> log file
E2E_PASSED=0
E2E_DBNAME=""
E2E_T0=$(date +%s%3N)

e2e_elapsed() {
    local ms=$(($(date +%s%3N) - E2E_T0))
    printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100))
}
e2e_log() { printf '[%s %6ss] %s\n' "${E2E_NAME:-e2e}" "$(e2e_elapsed)" "$*"; }

# Prints the end of every log of this test, then exits 1.
e2e_fail() {
    echo "FAIL: $*" >&2
    local name
    for name in "${!E2E_LOG[@]}"; do
        echo "--- last lines of $name (${E2E_LOG[$name]})" >&2
        tail -n 25 "${E2E_LOG[$name]}" >&2 2>/dev/null || true
    done
    exit 1
}

e2e_need() {
    local v
    for v in SAGA_DATABASE_URL SAGA_KAFKA_BROKERS SAGA_AMQP_URL; do
        [[ -n ${!v:-} ]] || e2e_fail "$v is not set: start the stack (deploy/local/start.sh) and source its env file"
    done
    for v in "$SAGAD" "$SAGACTL" "$PARTICIPANT"; do
        [[ -x $v ]] || e2e_fail "no program at $v: build first"
    done
}

# A database URL naming database $1 on the server of SAGA_DATABASE_URL.
e2e_db_url() {
    local url=$SAGA_DATABASE_URL query=""
    if [[ $url == *\?* ]]; then query="?${url#*\?}"; url=${url%%\?*}; fi
    if [[ $url == *://* ]]; then
        local rest=${url#*://}
        [[ $rest == */* ]] && url=${url%/*}
        echo "$url/$1$query"
    else
        echo "$url dbname=$1"
    fi
}

# A port below the kernel's ephemeral range (from 32768 by default), so that
# no outgoing connection of any process can take it between the pick and
# the bind.
e2e_free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 12700))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
    done
    return 1
}

# e2e_init NAME [SAGA...]: work folder, id, database, definitions (the
# examples named, or files given by their path in the source tree; default
# all of sagas/*.json), cleanup trap.
e2e_init() {
    E2E_NAME=$1
    shift
    e2e_need
    E2E_ID=$(printf '%s-%04x%04x' "$E2E_NAME" $RANDOM $RANDOM | tr '_' '-')
    E2E_WORK=$(mktemp -d "/tmp/sagad-e2e-$E2E_NAME.XXXXXX")
    trap e2e_cleanup EXIT
    trap 'exit 130' INT TERM
    E2E_DBNAME=$(echo "e2e_${E2E_ID}" | tr -- '-.' '__')
    psql "$SAGA_DATABASE_URL" -XAtq -v ON_ERROR_STOP=1 -c "CREATE DATABASE $E2E_DBNAME" >/dev/null ||
        e2e_fail "cannot create database $E2E_DBNAME"
    E2E_DB=$(e2e_db_url "$E2E_DBNAME")
    "$SAGACTL" --db "$E2E_DB" migrate >"$E2E_WORK/migrate.log" 2>&1 ||
        { cat "$E2E_WORK/migrate.log" >&2; e2e_fail "sagactl migrate failed"; }
    E2E_IN_KAFKA=kafka:saga.commands.$E2E_ID
    E2E_REPLIES_KAFKA=kafka:saga.replies.$E2E_ID
    E2E_IN_AMQP=amqp:/saga.commands.$E2E_ID
    E2E_REPLIES_AMQP=amqp:/saga.replies.$E2E_ID
    E2E_EVENTS=saga.events.$E2E_ID
    mkdir -p "$E2E_WORK/sagas"
    local names=("$@") n
    ((${#names[@]})) || names=($(basename -s .json "$E2E_SRC"/sagas/*.json))
    for n in "${names[@]}"; do
        if [[ $n == */* ]]; then e2e_add_saga "$E2E_SRC/$n"; else e2e_add_saga "$E2E_SRC/sagas/$n.json"; fi
    done
    e2e_log "work $E2E_WORK, database $E2E_DBNAME, channels *.$E2E_ID"
}

# e2e_add_saga FILE: adds a definition with its channels renamed for this test.
e2e_add_saga() {
    local base
    base=$(basename "$1")
    sed -E -e 's#"kafka:([^"]+)"#"kafka:\1.'"$E2E_ID"'"#g' \
           -e 's#"amqp:/([^"]+)"#"amqp:/\1.'"$E2E_ID"'"#g' \
           -e 's#"amqp:([^/"]+)/([^"]*)"#"amqp:\1.'"$E2E_ID"'/\2"#g' \
        "$1" >"$E2E_WORK/sagas/$base"
}

# Every channel the test's definitions name, one per line.
e2e_channels() {
    jq -r '.. | objects | .channel? // empty' "$E2E_WORK"/sagas/*.json | sort -u
}

# Topics are created before any consumer subscribes (consumers do not
# create topics; the dev broker makes them with 4 partitions).
e2e_create_topics() {
    local t args=()
    for t in "$@"; do args+=(-t "$t"); done
    timeout 30 kcat -b "$SAGA_KAFKA_BROKERS" -L "${args[@]}" >/dev/null 2>&1 ||
        e2e_fail "cannot create kafka topics $*"
}

# e2e_config FILE PORT [JSON]: sagad's configuration for this test, with
# JSON (an object) merged over it. The dev broker answers a fetch only when
# fetch.wait.max.ms has passed (it does not wake waiting fetches when data
# arrives), so consumers ask with a short wait.
e2e_config() {
    local file=$1 port=$2 extra=${3:-'{}'}
    jq -n --arg db "$E2E_DB" --arg sagas "$E2E_WORK/sagas" --arg mig "$E2E_SRC/migrations" \
        --arg brokers "$SAGA_KAFKA_BROKERS" --arg group "sagad-$E2E_ID" --arg amqp "$SAGA_AMQP_URL" \
        --arg ink "$E2E_IN_KAFKA" --arg rk "$E2E_REPLIES_KAFKA" --arg ina "$E2E_IN_AMQP" \
        --arg ra "$E2E_REPLIES_AMQP" --arg ev "kafka:$E2E_EVENTS" --arg listen "127.0.0.1:$port" \
        --argjson extra "$extra" '{
          database_url: $db, sagas_dir: $sagas, migrations_dir: $mig,
          kafka: { brokers: $brokers, group_id: $group,
                   properties: { "session.timeout.ms": "6000", "fetch.wait.max.ms": "20" } },
          amqp: { url: $amqp },
          inputs: [$ink, $rk, $ina, $ra],
          reply_to: { kafka: $rk, amqp: $ra },
          events: $ev,
          http: { listen: $listen },
          log: { format: "text", level: "info" }
        } * $extra' >"$file"
}

# env(1) arguments that drop the SAGA_* variables of the stack's env file,
# so that only the test's configuration counts for sagad.
e2e_unset_saga_env() {
    local v
    E2E_UNSET=()
    for v in $(compgen -e); do [[ $v == SAGA_* ]] && E2E_UNSET+=(-u "$v"); done
    return 0
}

# e2e_spawn_sagad NAME [JSON]: starts one sagad with this test's
# configuration (JSON merged over it) without waiting for it; a log of an
# earlier NAME is kept aside. Sets E2E_PID, E2E_LOG and E2E_PORT_<NAME>.
e2e_spawn_sagad() {
    local name=$1 extra=${2:-'{}'} port cfg log
    port=$(e2e_free_port) || e2e_fail "no free port"
    cfg=$E2E_WORK/$name.json
    log=$E2E_WORK/$name.log
    [[ -f $log ]] && mv "$log" "$log.$(date +%s%N)"
    e2e_config "$cfg" "$port" "$extra"
    e2e_unset_saga_env
    # env execs sagad, so $! is sagad's own pid
    env "${E2E_UNSET[@]}" ${E2E_SAGAD_ENV:-} "$SAGAD" --config "$cfg" >"$log" 2>&1 &
    E2E_PIDS+=("$!")
    E2E_PID[$name]=$!
    E2E_LOG[$name]=$log
    declare -g "E2E_PORT_$name=$port"
}

# e2e_start_sagad NAME [JSON]: e2e_spawn_sagad, with the test's topics
# created first, and waits until /readyz answers 200.
e2e_start_sagad() {
    local name=$1 port pid
    e2e_create_topics "${E2E_IN_KAFKA#kafka:}" "${E2E_REPLIES_KAFKA#kafka:}" "$E2E_EVENTS"
    e2e_spawn_sagad "$@"
    pid=${E2E_PID[$name]}
    port=E2E_PORT_$name
    port=${!port}
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || e2e_fail "$name exited at start"
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz") == 200 ]] && {
            e2e_log "$name ready (pid $pid, http $port)"
            e2e_wait_participants
            return 0
        }
        sleep 0.1
    done
    e2e_fail "$name not ready within 30 s"
}

# e2e_start_participant NAME [ARGS...]: a participant consuming every
# command channel of the test's definitions, with ARGS (rules) added.
# It does not wait: e2e_wait_participants (called by e2e_start_sagad) waits
# until every participant consumes, so both join their groups at once.
e2e_start_participant() {
    local name=$1 ch args=() topics=() log pid
    shift
    log=$E2E_WORK/$name.log
    while read -r ch; do
        case $ch in
        kafka:*) args+=(--kafka-topic "${ch#kafka:}"); topics+=("${ch#kafka:}") ;;
        amqp:/*) args+=(--amqp-queue "${ch#amqp:/}") ;;
        amqp:*) ch=${ch#amqp:}; args+=(--amqp-bind "${ch%%/*}:${ch#*/}:${ch%%/*}.${ch#*/}") ;;
        esac
    done < <(e2e_channels)
    ((${#topics[@]})) && e2e_create_topics "${topics[@]}"
    rm -f "$E2E_WORK/$name.ready"
    "$PARTICIPANT" --db "$E2E_DB" --group-id "participant-$E2E_ID" --ready-file "$E2E_WORK/$name.ready" \
        "${args[@]}" "$@" >"$log" 2>&1 &
    pid=$!
    E2E_PIDS+=("$pid")
    E2E_PID[$name]=$pid
    E2E_LOG[$name]=$log
    E2E_PARTICIPANTS+=("$name")
}

e2e_wait_participants() {
    local name pid
    for name in "${E2E_PARTICIPANTS[@]}"; do
        pid=${E2E_PID[$name]}
        for _ in $(seq 400); do
            [[ -s $E2E_WORK/$name.ready ]] && break
            kill -0 "$pid" 2>/dev/null || e2e_fail "$name exited at start"
            sleep 0.1
        done
        [[ -s $E2E_WORK/$name.ready ]] || e2e_fail "$name not ready within 40 s"
        e2e_log "$name ready (pid $pid)"
    done
    E2E_PARTICIPANTS=()
}

# e2e_stop NAME: SIGTERM, then waits; fails unless it exits 0 within 30 s.
e2e_stop() {
    local name=$1 pid=${E2E_PID[$1]} rc=0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && e2e_fail "$name did not stop within 30 s of SIGTERM"
    wait "$pid" || rc=$?
    ((rc == 0)) || e2e_fail "$name exited with status $rc after SIGTERM"
    e2e_log "$name stopped cleanly"
}

# e2e_wait_kafka_group PARTITIONS NAME...: waits until the sagad processes
# NAME... share the PARTITIONS partitions of their input topics, each with
# some, and the group has stayed so for 2 s (each one's last rebalance line
# in its log is an assignment). A group that members join one after the other rebalances
# several times; input sent meanwhile waits.
e2e_wait_kafka_group() {
    local want=$1 name total stable=0 last n idle
    shift
    for _ in $(seq 240); do
        total=0
        idle=0
        for name in "$@"; do
            last=$(grep -o 'kafka rebalance: [a-z]* [0-9]*' "${E2E_LOG[$name]}" | tail -n1 || true)
            n=0
            [[ $last == *assigned* ]] && n=${last##* }
            ((n > 0)) || idle=1
            total=$((total + n))
        done
        if ((total == want && !idle)); then
            stable=$((stable + 1))
            ((stable >= 8)) && { e2e_log "kafka group stable: $want partitions over $#"; return 0; }
        else
            stable=0
        fi
        sleep 0.25
    done
    e2e_fail "the kafka group of $* did not settle on $want partitions"
}

# e2e_warm_up SAGATYPE DATA: starts saga "warmup" through Kafka and waits
# until sagad has taken it in. sagad is ready before its Kafka consumer
# group has its partitions (the first join takes seconds); a test whose
# timeouts are short waits for this, so that replies are read at once.
e2e_warm_up() {
    local line
    line=$(jq -cn --arg t "$1" --argjson d "$2" \
        '{specversion: "1.0", id: "warmup", source: "urn:e2e", type: "saga.start", sagatype: $t, sagaid: "warmup", data: $d}')
    e2e_send "$E2E_IN_KAFKA" --lines <(echo "$line")
    e2e_wait_sql "SELECT count(*) = 1 FROM sagas WHERE id = 'warmup'" 30 "the warm-up saga taken in through kafka"
}

# e2e_send CHANNEL ARGS...: participant send (see participant_send.c).
e2e_send() {
    local to=$1
    shift
    "$PARTICIPANT" send --quiet --to "$to" "$@" || e2e_fail "sending to $to failed"
}

# e2e_metric SAGAD_NAME METRIC [LABEL-FILTER]: the sum of the series of
# METRIC on that sagad's /metrics whose labels contain the filter text.
e2e_metric() {
    local port_var=E2E_PORT_$1
    curl -s "http://127.0.0.1:${!port_var}/metrics" |
        awk -v m="$2" -v f="${3:-}" '$1 ~ "^"m"({|$)" && index($1, f) { s += $2 } END { printf "%d\n", s }'
}

e2e_sql() {
    psql "$E2E_DB" -XAtq -v ON_ERROR_STOP=1 -c "$1"
}

# e2e_wait_sql SQL TIMEOUT WHAT: until SQL returns "t".
e2e_wait_sql() {
    local sql=$1 timeout=$2 what=$3 end
    end=$(($(date +%s) + timeout))
    while (($(date +%s) < end)); do
        [[ $(e2e_sql "$sql" 2>/dev/null) == t ]] && return 0
        sleep 0.3
    done
    e2e_fail "timed out after ${timeout}s waiting for: $what"
}

# e2e_wait_finished COUNT TIMEOUT: until COUNT sagas exist and none is
# running or compensating.
e2e_wait_finished() {
    local n=$1 timeout=$2
    e2e_wait_sql "SELECT count(*) = $n AND count(*) FILTER (WHERE status IN ('running','compensating')) = 0 FROM sagas" \
        "$timeout" "$n sagas finished ($(e2e_sql "SELECT string_agg(status || '=' || n, ' ') FROM (SELECT status, count(*) n FROM sagas GROUP BY 1) x" 2>/dev/null || true))"
}

# e2e_expect WHAT ACTUAL EXPECTED
e2e_expect() {
    [[ $2 == "$3" ]] || e2e_fail "$1: got '$2', expected '$3'"
}

# The steps of every stored definition: type, version, top-level index
# (members of a parallel group share it), step name, has a compensation.
E2E_DEFSTEPS="
  SELECT d.name AS type, d.version, s.ord AS idx,
         COALESCE(m.value, s.value)->>'name' AS step,
         (COALESCE(m.value, s.value) ? 'compensation') AS has_comp
  FROM saga_definitions d
  CROSS JOIN LATERAL jsonb_array_elements(d.body->'steps') WITH ORDINALITY AS s(value, ord)
  LEFT JOIN LATERAL jsonb_array_elements(s.value->'parallel') AS m(value) ON true"

# Checks what must hold once every saga has finished; fails with the first
# violation. Effects are the participant's rows (one per command id). The
# last rows a saga wrote are deleted once their brokers confirmed them, a
# moment after it finished: the system drains first.
e2e_check_invariants() {
    e2e_wait_sql "SELECT count(*) = 0 FROM outbox" 15 "the outbox to drain"
    local checks=(
        "outbox rows left after all sagas finished|SELECT count(*) FROM outbox"
        "timers left for finished sagas|SELECT count(*) FROM timers t JOIN sagas s ON s.id = t.saga_id WHERE s.status IN ('completed','compensated')"
        "a step that took effect twice (without a timeout that made it be sent again)|SELECT count(*) FROM (SELECT saga_id, step, undo FROM participant_effects WHERE outcome = 'success' GROUP BY 1,2,3 HAVING count(*) > 1) x WHERE NOT EXISTS (SELECT 1 FROM saga_history h WHERE h.saga_id = x.saga_id AND h.step = x.step AND h.event = 'input.timer' AND h.detail->'input'->>'timer' IN ('step_timeout', 'compensation_timeout'))"
        "commands for sagas that do not exist|SELECT count(*) FROM participant_effects e LEFT JOIN sagas s ON s.id = e.saga_id WHERE s.id IS NULL"
        "a completed saga with a compensation|SELECT count(*) FROM participant_effects e JOIN sagas s ON s.id = e.saga_id WHERE e.undo AND s.status = 'completed'"
        "a completed saga with a step that never succeeded|SELECT count(*) FROM sagas s JOIN ($E2E_DEFSTEPS) d ON d.type = s.type AND d.version = s.definition_version WHERE s.status = 'completed' AND NOT EXISTS (SELECT 1 FROM participant_effects e WHERE e.saga_id = s.id AND e.step = d.step AND NOT e.undo AND e.outcome = 'success')"
        "a compensated saga with a done step not undone|SELECT count(*) FROM sagas s JOIN ($E2E_DEFSTEPS) d ON d.type = s.type AND d.version = s.definition_version WHERE s.status = 'compensated' AND d.has_comp AND EXISTS (SELECT 1 FROM participant_effects e WHERE e.saga_id = s.id AND e.step = d.step AND NOT e.undo AND e.outcome = 'success') AND NOT EXISTS (SELECT 1 FROM participant_effects e WHERE e.saga_id = s.id AND e.step = d.step AND e.undo AND e.outcome = 'success')"
        "a compensation of a step that was never sent|SELECT count(*) FROM participant_effects u WHERE u.undo AND NOT EXISTS (SELECT 1 FROM participant_effects e WHERE e.saga_id = u.saga_id AND e.step = u.step AND NOT e.undo)"
        "compensations out of reverse order (effects)|SELECT count(*) FROM sagas s JOIN ($E2E_DEFSTEPS) a ON a.type = s.type AND a.version = s.definition_version JOIN ($E2E_DEFSTEPS) b ON b.type = s.type AND b.version = s.definition_version AND a.idx < b.idx WHERE (SELECT min(seq) FROM participant_effects e WHERE e.saga_id = s.id AND e.step = a.step AND e.undo) < (SELECT max(seq) FROM participant_effects e WHERE e.saga_id = s.id AND e.step = b.step AND e.undo AND e.outcome = 'success')"
        "compensations out of reverse order (history)|SELECT count(*) FROM sagas s JOIN saga_history h1 ON h1.saga_id = s.id AND h1.event = 'step.compensated' JOIN saga_history h2 ON h2.saga_id = s.id AND h2.event = 'step.compensated' AND h1.seq < h2.seq JOIN ($E2E_DEFSTEPS) a ON a.type = s.type AND a.version = s.definition_version AND a.step = h1.step JOIN ($E2E_DEFSTEPS) b ON b.type = s.type AND b.version = s.definition_version AND b.step = h2.step WHERE a.idx < b.idx"
    )
    local c what sql got
    for c in "${checks[@]}"; do
        what=${c%%|*}
        sql=${c#*|}
        got=$(e2e_sql "$sql") || e2e_fail "invariant query failed: $what"
        [[ $got == 0 ]] || e2e_fail "invariant broken: $what ($got)"
    done
    e2e_log "invariants hold (${#checks[@]} checks)"
}

# One line of figures for the issue note, also appended to
# $E2E_FIGURES_FILE (default <build>/e2e-figures.txt).
e2e_figures() {
    local line
    line=$(e2e_sql "SELECT format('sagas=%s completed=%s compensated=%s failed=%s effects=%s commands=%s redelivered=%s double_effects=%s dead_letters=%s',
        (SELECT count(*) FROM sagas),
        (SELECT count(*) FROM sagas WHERE status = 'completed'),
        (SELECT count(*) FROM sagas WHERE status = 'compensated'),
        (SELECT count(*) FROM sagas WHERE status = 'failed'),
        (SELECT count(*) FROM participant_effects WHERE outcome = 'success'),
        (SELECT count(*) FROM participant_effects),
        (SELECT count(*) FROM participant_effects WHERE attempts > 1),
        (SELECT count(*) FROM (SELECT 1 FROM participant_effects WHERE outcome = 'success' GROUP BY saga_id, step, undo HAVING count(*) > 1) x),
        (SELECT count(*) FROM dead_letters))")
    line="FIGURES $E2E_NAME: $line time=$(e2e_elapsed)s"
    echo "$line"
    echo "$line" >>"${E2E_FIGURES_FILE:-$E2E_BIN/e2e-figures.txt}"
}

e2e_pass() {
    E2E_PASSED=1
    e2e_log "PASS"
}

# Stops what this test started (its own pids only), drops its database and
# deletes its RabbitMQ queues and exchanges.
e2e_cleanup() {
    local rc=$? pid i queues=() exchanges=() ch
    for ((i = ${#E2E_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${E2E_PIDS[$i]}
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${E2E_PIDS[@]}"; do
        for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n ${E2E_WORK:-} && -d $E2E_WORK/sagas ]]; then
        queues=("${E2E_IN_AMQP#amqp:/}" "${E2E_REPLIES_AMQP#amqp:/}")
        while read -r ch; do
            case $ch in
            amqp:/*) queues+=("${ch#amqp:/}") ;;
            amqp:*) ch=${ch#amqp:}; exchanges+=("${ch%%/*}"); queues+=("${ch%%/*}.${ch#*/}") ;;
            esac
        done < <(e2e_channels 2>/dev/null || true)
        local qargs=() q
        for q in "${queues[@]}"; do qargs+=(--amqp-queue "$q"); done
        for q in $(printf '%s\n' "${exchanges[@]}" | sort -u); do qargs+=(--amqp-exchange "$q"); done
        "$PARTICIPANT" cleanup "${qargs[@]}" >/dev/null 2>&1 || true
    fi
    if ((E2E_PASSED)) && [[ ${E2E_KEEP:-0} != 1 ]]; then
        [[ -n $E2E_DBNAME ]] &&
            psql "$SAGA_DATABASE_URL" -XAtq -c "DROP DATABASE IF EXISTS $E2E_DBNAME WITH (FORCE)" >/dev/null 2>&1
        rm -rf "${E2E_WORK:-/nonexistent}"
    elif [[ -n ${E2E_WORK:-} ]]; then
        echo "kept for inspection: $E2E_WORK, database $E2E_DBNAME" >&2
    fi
    if ((rc == 0 && !E2E_PASSED)); then
        echo "FAIL: the test ended without e2e_pass" >&2
        rc=1
    fi
    exit "$rc"
}
