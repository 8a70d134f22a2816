# lib.sh: the benchmark's building blocks, sourced by run.sh (not run).
# Stack: deploy/local (common.sh, start.sh) with this benchmark's own run dir
# and ports. Every measured run gets a fresh Kafka dev broker (nothing left
# over in its topics), a fresh "sagas" database, and its own RabbitMQ queue
# names, so runs do not see each other's messages.

bench_say() { printf '[bench] %s\n' "$*" >&2; }
bench_fail() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

# ---- build ------------------------------------------------------------------

bench_build() {
    bench_say "release build in $BENCH_BUILD_DIR"
    # -Wno-format-truncation: at -O2 gcc sees possible truncation in a few
    # bounded snprintf calls that debug builds do not analyse.
    cmake -S "$BENCH_REPO" -B "$BENCH_BUILD_DIR" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_C_FLAGS="-Wno-format-truncation" >"$BENCH_OUT/build.log" 2>&1 &&
        cmake --build "$BENCH_BUILD_DIR" -j2 --target sagad sagactl kafka-dev-broker bench-driver \
            >>"$BENCH_OUT/build.log" 2>&1 ||
        { tail -n 30 "$BENCH_OUT/build.log" >&2; bench_fail "build failed, see $BENCH_OUT/build.log"; }
    SAGAD=$BENCH_BUILD_DIR/orchestrator/sagad
    SAGACTL=$BENCH_BUILD_DIR/orchestrator/sagactl
    DRIVER=$BENCH_BUILD_DIR/bench/bench-driver
    export SAGA_KAFKA_DEV_BROKER=$BENCH_BUILD_DIR/tests/tools/kafka-dev-broker
}

# ---- stack ------------------------------------------------------------------

# Starts what of the stack does not run yet (a second try when the first
# fails: a RabbitMQ node sometimes fails its first start on a busy machine).
# From the run dir, where a failing Erlang VM leaves its crash dump.
bench_stack_up() {
    local try
    for try in 1 2; do
        (cd "$SAGA_RUN_DIR" && SAGA_KAFKA_BROKER_COUNT=1 bash "$BENCH_REPO/deploy/local/start.sh") \
            >>"$BENCH_OUT/stack.log" 2>&1 && break
        ((try == 2)) && { tail -n 20 "$BENCH_OUT/stack.log" >&2; bench_fail "the stack did not start"; }
        bench_say "the stack did not start, trying again (see $BENCH_OUT/stack.log)"
        bench_stack_down
    done
    # shellcheck disable=SC1091
    source "$SAGA_RUN_DIR/env"
    # shellcheck disable=SC1091
    source "$BENCH_REPO/deploy/local/common.sh"
    load_ports
}

bench_stack_down() {
    bash "$BENCH_REPO/deploy/local/stop.sh" >>"$BENCH_OUT/stack.log" 2>&1 || true
}

# A new, empty Kafka dev broker with the benchmark's commands topic.
bench_kafka_fresh() {
    local pid i
    if pid=$(kafka_pid); then
        kill -TERM "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$KAFKA_PID" "$KAFKA_BOOTSTRAP"
    bench_stack_up
    printf 'topic bench.commands 4\n' >"$SAGA_KAFKA_CONTROL"
    for ((i = 0; i < 50; i++)); do
        grep -q 'applied: topic bench.commands' "$KAFKA_LOG" 2>/dev/null && return 0
        sleep 0.1
    done
    bench_fail "the kafka dev broker did not create topic bench.commands"
}

# CPU ticks of the whole PostgreSQL cluster: the postmaster with its ended
# children, and every live child (backends, WAL writer, checkpointer).
bench_pg_cpu_ticks() {
    local pm
    pm=$(head -n 1 "$PG_DATA/postmaster.pid")
    { awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$pm/stat"
      for c in $(cat "/proc/$pm/task/$pm/children" 2>/dev/null); do
          awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$c/stat" 2>/dev/null
      done; } | awk '{ s += $1 } END { print s + 0 }'
}

bench_psql() {
    as_pg "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U saga -v ON_ERROR_STOP=1 "$@"
}

# Drops and creates database $1, then migrates it.
bench_db_fresh() {
    bench_psql -d postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" ||
        bench_fail "cannot create database $1"
    "$SAGACTL" migrate --db "postgresql://saga@127.0.0.1:$PG_PORT/$1" \
        --migrations "$BENCH_REPO/migrations" >/dev/null || bench_fail "cannot migrate database $1"
}

bench_commits() {
    bench_psql -d postgres -tAc "SELECT pg_stat_clear_snapshot(); SELECT xact_commit FROM pg_stat_database WHERE datname = '$1'" | tail -n 1
}

# Rows written to database $1 so far, as JSON.
bench_tuples() {
    bench_psql -d postgres -tAc "SELECT pg_stat_clear_snapshot(); SELECT json_build_object('inserted', tup_inserted, 'updated', tup_updated, 'deleted', tup_deleted) FROM pg_stat_database WHERE datname = '$1'" | tail -n 1
}

# ---- pgbench: the database's own ceiling -------------------------------------

# Prints the tps of one pgbench run and the cluster's CPU seconds per 1,000
# of its transactions: $1 clients, $2 seconds, $3 log name.
bench_pgbench_run() {
    local clients=$1 secs=$2 log=$BENCH_OUT/$3.log cpu0 cpu1 tps
    cpu0=$(bench_pg_cpu_ticks)
    as_pg "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U saga -n -M prepared \
        -c "$clients" -j "$(( clients < 2 ? 1 : 2 ))" -T "$secs" -D "nsagas=$BENCH_PGBENCH_SAGAS" \
        -f "$BENCH_DIR/pgbench_transition.sql" bench_pgbench >"$log" 2>&1 ||
        { tail -n 20 "$log" >&2; bench_fail "pgbench failed, see $log"; }
    # pgbench's backends have exited; their CPU counts once the postmaster
    # has reaped them (into its children's times).
    sleep 1
    cpu1=$(bench_pg_cpu_ticks)
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$log")
    jq -n --argjson tps "$tps" --argjson ticks "$((cpu1 - cpu0))" --argjson hz "$(getconf CLK_TCK)" \
        --argjson s "$secs" '{tps: $tps, postgres_cpu_s_per_1000: ($ticks / $hz * 1000 / ($tps * $s))}'
}

# The ceiling: 1 and 4 clients first; 4 clients again after the sagad runs
# (bench_pgbench_again), since the machine's load moves in between.
bench_pgbench() {
    bench_say "pgbench ceiling: seeding $BENCH_PGBENCH_SAGAS sagas"
    bench_db_fresh bench_pgbench
    bench_psql -d bench_pgbench -v nsagas="$BENCH_PGBENCH_SAGAS" -f "$BENCH_DIR/pgbench_seed.sql" \
        >/dev/null || bench_fail "cannot seed the pgbench database"
    local c1 c4
    c1=$(bench_pgbench_run 1 "$BENCH_PGBENCH_SECONDS" pgbench-c1)
    c4=$(bench_pgbench_run 4 "$BENCH_PGBENCH_SECONDS" pgbench-c4)
    bench_say "pgbench: $(jq .tps <<<"$c1") tps with 1 client, $(jq .tps <<<"$c4") tps with 4 clients"
    jq -n --argjson c1 "$c1" --argjson c4 "$c4" --argjson s "$BENCH_PGBENCH_SECONDS" \
        '{seconds_each: $s, script: "bench/pgbench_transition.sql",
          tps_1_client: $c1.tps, tps_4_clients_before: $c4.tps, tps_4_clients: $c4.tps,
          postgres_cpu_s_per_1000_tx_1_client: $c1.postgres_cpu_s_per_1000,
          postgres_cpu_s_per_1000_tx_4_clients: $c4.postgres_cpu_s_per_1000}' >"$BENCH_OUT/pgbench.json"
}

bench_pgbench_again() {
    local c4
    c4=$(bench_pgbench_run 4 "$BENCH_PGBENCH_SECONDS" pgbench-c4-after)
    bench_say "pgbench again: $(jq .tps <<<"$c4") tps with 4 clients"
    jq --argjson c4 "$c4" '.tps_4_clients_after = $c4.tps
        | .tps_4_clients = ((.tps_4_clients_before + $c4.tps) / 2)' "$BENCH_OUT/pgbench.json" \
        >"$BENCH_OUT/pgbench.json.tmp" && mv "$BENCH_OUT/pgbench.json.tmp" "$BENCH_OUT/pgbench.json"
    bench_psql -d postgres -c "DROP DATABASE bench_pgbench WITH (FORCE)" >/dev/null || true
}

# ---- sagad --------------------------------------------------------------------

# Writes the configuration of worker $3 for transport $1 of run $2.
bench_sagad_config() {
    local transport=$1 run=$2 k=$3
    if [[ $transport == kafka ]]; then
        jq -n --arg db "$SAGA_DATABASE_URL" --arg dir "$BENCH_RUN/sagas" \
            --arg mig "$BENCH_REPO/migrations" --arg brokers "$SAGA_KAFKA_BROKERS" \
            --arg http "127.0.0.1:$((BENCH_HTTP_PORT + k))" --argjson props "$BENCH_KAFKA_PROPS" \
            '{database_url: $db, sagas_dir: $dir, migrations_dir: $mig,
              kafka: {brokers: $brokers, group_id: "sagad", properties: $props},
              inputs: ["kafka:saga.commands", "kafka:saga.replies"],
              events: "kafka:saga.events", http: {listen: $http},
              log: {format: "text", level: "warn"}}'
    else
        jq -n --arg db "$SAGA_DATABASE_URL" --arg dir "$BENCH_RUN/sagas" \
            --arg mig "$BENCH_REPO/migrations" --arg url "$SAGA_AMQP_URL" \
            --arg in "amqp:/bench.$run.in" --arg ev "amqp:/bench.$run.events" \
            --arg http "127.0.0.1:$((BENCH_HTTP_PORT + k))" --argjson prefetch "$BENCH_AMQP_PREFETCH" \
            '{database_url: $db, sagas_dir: $dir, migrations_dir: $mig,
              amqp: {url: $url, prefetch: $prefetch}, inputs: [$in],
              reply_to: {amqp: $in}, events: $ev, http: {listen: $http},
              log: {format: "text", level: "warn"}}'
    fi
}

# Starts $2 sagad processes for transport $1, run name $3; their pids go to
# SAGAD_PIDS. The environment is cleared so that only the file configures.
bench_sagad_start() {
    local transport=$1 n=$2 run=$3 k conf i
    SAGAD_PIDS=()
    # Only the definition this transport uses: the other would make sagad
    # warn about channels of a transport it has no connection for.
    mkdir -p "$BENCH_RUN/sagas"
    if [[ $transport == kafka ]]; then
        cp "$BENCH_DIR/sagas/bench_three_step.json" "$BENCH_RUN/sagas/"
    else
        cp "$BENCH_DIR/sagas/bench_three_step_amqp.json" "$BENCH_RUN/sagas/"
    fi
    for ((k = 0; k < n; k++)); do
        conf=$BENCH_RUN/sagad-$k.json
        bench_sagad_config "$transport" "$run" "$k" >"$conf"
        env -i PATH="$PATH" HOME="${HOME:-/}" "$SAGAD" --config "$conf" \
            </dev/null >"$BENCH_RUN/sagad-$k.log" 2>&1 &
        SAGAD_PIDS+=($!)
    done
    for ((k = 0; k < n; k++)); do
        for ((i = 0; i < 300; i++)); do
            curl -sf "http://127.0.0.1:$((BENCH_HTTP_PORT + k))/readyz" >/dev/null && break
            kill -0 "${SAGAD_PIDS[k]}" 2>/dev/null ||
                { tail -n 20 "$BENCH_RUN/sagad-$k.log" >&2; bench_fail "sagad $k exited"; }
            sleep 0.1
        done
        ((i < 300)) || bench_fail "sagad $k not ready after 30 s, see $BENCH_RUN/sagad-$k.log"
    done
}

bench_sagad_stop() {
    local pid
    for pid in "${SAGAD_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${SAGAD_PIDS[@]}"; do
        wait_gone "$pid" 30 || { bench_say "sagad $pid did not stop, killing it"; kill -KILL "$pid" 2>/dev/null || true; }
        wait "$pid" 2>/dev/null || true
    done
    SAGAD_PIDS=()
}

# CPU ticks (user + system) of a pid.
bench_cpu_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

# The whole machine's busy CPU ticks (all cores, from /proc/stat).
bench_machine_ticks() {
    awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

# Pid of the broker a transport goes through (the Kafka dev broker, or the
# RabbitMQ node); nothing when it cannot be found.
bench_broker_pid() {
    if [[ $1 == kafka ]]; then kafka_pid || true; else rmq_pid || true; fi
}

# A field of /proc/PID/status in kB (VmHWM, VmRSS).
bench_proc_kb() {
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

# Sum of a metric over all workers (first sample line of each).
bench_metric_sum() {
    local name=$1 k total=0 v
    for ((k = 0; k < ${#SAGAD_PIDS[@]}; k++)); do
        v=$(curl -sf -m 10 "http://127.0.0.1:$((BENCH_HTTP_PORT + k))/metrics" |
            awk -v n="$name" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%.0f", s }') ||
            bench_say "cannot read /metrics of sagad $k"
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

bench_metrics_save() {
    local k
    for ((k = 0; k < ${#SAGAD_PIDS[@]}; k++)); do
        curl -sf -m 10 "http://127.0.0.1:$((BENCH_HTTP_PORT + k))/metrics" >"$BENCH_RUN/metrics-$k.txt" || true
    done
}

# bench_hist_ms METRIC: p50, p99 (ms, linear within a bucket, as Prometheus'
# histogram_quantile) and count of a histogram summed over this run's
# sagad processes, as JSON; null when it has no observations.
bench_hist_ms() {
    cat "$BENCH_RUN"/metrics-*.txt 2>/dev/null | awk -v m="$1" '
        index($1, m "_bucket{le=\"") == 1 {
            le = $1; sub(/^.*le="/, "", le); sub(/".*$/, "", le)
            c[le] += $2; if (!(le in seen)) { seen[le] = 1; order[n++] = le }
        }
        END {
            if (n == 0 || c["+Inf"] == 0) { print "null"; exit }
            total = c["+Inf"]
            printf "{\"count\": %d", total
            split("0.5 0.99", qs, " ")
            for (k = 1; k <= 2; k++) {
                want = qs[k] * total; prev_le = 0; prev_c = 0; v = ""
                for (i = 0; i < n; i++) {
                    le = order[i]
                    if (c[le] >= want) {
                        v = (le == "+Inf") ? prev_le : prev_le + (le - prev_le) * (want - prev_c) / (c[le] - prev_c)
                        break
                    }
                    prev_le = le; prev_c = c[le]
                }
                printf ", \"p%s_ms\": %.2f", (k == 1 ? "50" : "99"), v * 1000
            }
            print "}"
        }'
}

# ---- one measured run -----------------------------------------------------------

# bench_measure NAME TRANSPORT WORKERS DRIVER-ARGS...: a fresh database (and
# Kafka), WORKERS sagad processes, one driver; writes runs/NAME/run.json.
bench_measure() {
    local name=$1 transport=$2 workers=$3 k rc=0
    shift 3
    BENCH_RUN=$BENCH_OUT/runs/$name
    mkdir -p "$BENCH_RUN"
    bench_say "run $name: $transport, $workers sagad, $*"
    [[ $transport == kafka ]] && bench_kafka_fresh
    # The ceiling right now: the machine's other load drifts during a
    # benchmark, so each run also gets a short pgbench just before it.
    local just_before=null
    if ((${BENCH_CEILING_SECONDS:-5} > 0)) &&
        [[ $(bench_psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'bench_pgbench'") == 1 ]]; then
        just_before=$(bench_pgbench_run 4 "${BENCH_CEILING_SECONDS:-5}" "runs/$name/pgbench-c4" | jq .tps)
    fi
    bench_db_fresh sagas
    bench_sagad_start "$transport" "$workers" "$name"
    local tup0 tup1 pgcpu0 pgcpu1 cpu0=() cpu=0 hwm=0 hwm_sum=0 rss=0 commits0 commits1 trans0 trans1 v
    local broker bcpu0=0 bcpu1=0 m0 m1
    broker=$(bench_broker_pid "$transport")
    [[ -n $broker ]] && bcpu0=$(bench_cpu_ticks "$broker")
    m0=$(bench_machine_ticks)
    for ((k = 0; k < workers; k++)); do cpu0+=("$(bench_cpu_ticks "${SAGAD_PIDS[k]}")"); done
    commits0=$(bench_commits sagas)
    tup0=$(bench_tuples sagas)
    pgcpu0=$(bench_pg_cpu_ticks)
    trans0=$(bench_metric_sum sagad_transitions_total)
    local args=(--transport "$transport" --run-id "$name" --commands bench.commands
                --stall-seconds "$BENCH_STALL_SECONDS" --out "$BENCH_RUN/driver.json")
    if [[ $transport == kafka ]]; then
        # The driver's consumer waits on the dev broker as sagad's does.
        args+=(--saga-type bench_three_step --events saga.events
               --kafka-property "fetch.wait.max.ms=$(jq -r '."fetch.wait.max.ms" // "5"' <<<"$BENCH_KAFKA_PROPS")"
               --kafka-property linger.ms=1)
    else
        args+=(--saga-type bench_three_step_amqp --events "bench.$name.events"
               --start-channel "amqp:/bench.$name.in")
    fi
    local perf_pid=
    if [[ $BENCH_PERF == 1 ]]; then
        perf record -F 499 --call-graph dwarf,16384 -o "$BENCH_RUN/perf.data" -p "$(IFS=,; echo "${SAGAD_PIDS[*]}")" \
            >"$BENCH_RUN/perf.log" 2>&1 &
        perf_pid=$!
    fi
    "$DRIVER" "${args[@]}" "$@" 2>"$BENCH_RUN/driver.log" || rc=$?
    if [[ -n $perf_pid ]]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
        perf report -i "$BENCH_RUN/perf.data" --stdio --no-children --percent-limit 0.5 \
            --sort dso,symbol -g none >"$BENCH_RUN/perf.txt" 2>/dev/null || true
    fi
    ((rc == 0)) || bench_say "run $name: the driver reports failure (see $BENCH_RUN/driver.log)"
    sleep "${BENCH_SETTLE_SECONDS:-0}"
    trans1=$(bench_metric_sum sagad_transitions_total)
    pgcpu1=$(bench_pg_cpu_ticks)
    m1=$(bench_machine_ticks)
    [[ -n $broker ]] && bcpu1=$(bench_cpu_ticks "$broker")
    for ((k = 0; k < workers; k++)); do
        cpu=$((cpu + $(bench_cpu_ticks "${SAGAD_PIDS[k]}") - cpu0[k]))
        v=$(bench_proc_kb "${SAGAD_PIDS[k]}" VmHWM)
        hwm_sum=$((hwm_sum + v)); ((v > hwm)) && hwm=$v
        v=$(bench_proc_kb "${SAGAD_PIDS[k]}" VmRSS); rss=$((rss + v))
    done
    bench_metrics_save
    bench_sagad_stop
    commits1=$(bench_commits sagas)
    tup1=$(bench_tuples sagas)
    jq --arg name "$name" --arg transport "$transport" --argjson workers "$workers" \
        --argjson ok "$([[ $rc == 0 ]] && echo true || echo false)" \
        --argjson transitions "$((trans1 - trans0))" --argjson commits "$((commits1 - commits0))" \
        --argjson cpu_ticks "$cpu" --argjson pg_ticks "$((pgcpu1 - pgcpu0))" --argjson hz "$(getconf CLK_TCK)" \
        --argjson tup0 "$tup0" --argjson tup1 "$tup1" --argjson just_before "$just_before" \
        --argjson hwm "$hwm" --argjson hwm_sum "$hwm_sum" --argjson rss "$rss" \
        --argjson in_sagad "$(bench_hist_ms sagad_reply_to_command_seconds)" \
        --argjson broker_ticks "$([[ -n $broker ]] && echo $((bcpu1 - bcpu0)) || echo null)" \
        --argjson busy "$((m1 - m0))" \
        '{name: $name, transport: $transport, workers: $workers, ok: $ok,
          sagas: .completed, seconds: .seconds, sagas_per_s: .sagas_per_s,
          transitions: $transitions,
          transitions_per_s: (if .seconds > 0 then $transitions / .seconds else 0 end),
          step_latency_ms: .step_latency, first_command_latency_ms: .first_command_latency,
          sagad_reply_to_command_ms: $in_sagad,
          saga_duration_ms: .saga_duration,
          pgbench_4_clients_just_before: $just_before,
          ratio_to_pgbench_just_before:
              (if $just_before != null and .seconds > 0 then $transitions / .seconds / $just_before else null end),
          sagad_cpu_s: ($cpu_ticks / $hz),
          sagad_cpu_s_per_1000_transitions:
              (if $transitions > 0 then $cpu_ticks / $hz * 1000 / $transitions else null end),
          postgres_cpu_s_per_1000_transitions:
              (if $transitions > 0 then $pg_ticks / $hz * 1000 / $transitions else null end),
          broker_cpu_s_per_1000_transitions:
              (if $transitions > 0 and $broker_ticks != null then $broker_ticks / $hz * 1000 / $transitions else null end),
          machine_cpu_s_per_1000_transitions:
              (if $transitions > 0 then $busy / $hz * 1000 / $transitions else null end),
          sagad_peak_rss_kb: $hwm, sagad_peak_rss_kb_all_workers: $hwm_sum,
          sagad_rss_kb_at_end: $rss,
          db_commits: $commits,
          db_commits_per_transition: (if $transitions > 0 then $commits / $transitions else null end),
          db_rows_per_transition: (if $transitions > 0 then
              {inserted: (($tup1.inserted - $tup0.inserted) / $transitions),
               updated: (($tup1.updated - $tup0.updated) / $transitions),
               deleted: (($tup1.deleted - $tup0.deleted) / $transitions)} else null end),
          driver: .}' "$BENCH_RUN/driver.json" >"$BENCH_RUN/run.json" ||
        bench_fail "run $name wrote no report"
    return 0
}
