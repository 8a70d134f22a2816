#!/usr/bin/env bash
# run.sh: the sagad benchmark, one command. See bench/README.md.
#
# Starts its own local stack (PostgreSQL 15, RabbitMQ, Kafka dev broker) in
# its own run dir and ports, builds sagad in Release, measures the
# database's ceiling with pgbench, runs the sagas through Kafka and through
# RabbitMQ with 1, 2 and 4 sagad processes, then at half of the measured
# saturation, and writes bench/results/<timestamp>/ (results.json,
# results.txt, workers.png, and each run's files under runs/).
#
# BENCH_MODE=full (default) | memory | soak | pgbench; BENCH_QUICK=1 for a
# short run. Every setting is an environment variable: see the README.
set -Eeuo pipefail
trap 'printf "[bench] error: line %s of %s failed: %s\n" "$LINENO" "${BASH_SOURCE[0]}" "$BASH_COMMAND" >&2' ERR

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_REPO=$(dirname "$BENCH_DIR")
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

# ---- settings -----------------------------------------------------------------

BENCH_MODE=${BENCH_MODE:-full}
BENCH_QUICK=${BENCH_QUICK:-0}
if [[ $BENCH_QUICK == 1 ]]; then
    : "${BENCH_SAGAS:=2000}" "${BENCH_PGBENCH_SECONDS:=4}" "${BENCH_HALF_SECONDS:=5}"
    : "${BENCH_WORKERS:=1 2}" "${BENCH_WINDOW:=300}"
fi
BENCH_SAGAS=${BENCH_SAGAS:-20000}
BENCH_WINDOW=${BENCH_WINDOW:-400}
BENCH_WORKERS=${BENCH_WORKERS:-1 2 4}
BENCH_TRANSPORTS=${BENCH_TRANSPORTS:-kafka amqp}
BENCH_PGBENCH_SECONDS=${BENCH_PGBENCH_SECONDS:-20}
BENCH_PGBENCH_SAGAS=${BENCH_PGBENCH_SAGAS:-20000}
BENCH_HALF_SECONDS=${BENCH_HALF_SECONDS:-20}
BENCH_MEMORY_SAGAS=${BENCH_MEMORY_SAGAS:-100000}
BENCH_MEMORY_LIMIT_MB=${BENCH_MEMORY_LIMIT_MB:-64}
BENCH_MEMORY_RATE=${BENCH_MEMORY_RATE:-500}   # starts per second (see the README)
BENCH_SOAK_SAGAS=${BENCH_SOAK_SAGAS:-100000}
BENCH_STALL_SECONDS=${BENCH_STALL_SECONDS:-60}
BENCH_CEILING_SECONDS=${BENCH_CEILING_SECONDS:-5}   # pgbench 4 clients just before each run; 0: off
BENCH_KAFKA_PROPS=${BENCH_KAFKA_PROPS:-'{"fetch.wait.max.ms": "1"}'}
BENCH_AMQP_PREFETCH=${BENCH_AMQP_PREFETCH:-1000}
BENCH_HTTP_PORT=${BENCH_HTTP_PORT:-19464}
BENCH_KEEP_STACK=${BENCH_KEEP_STACK:-0}
BENCH_BUILD_DIR=${BENCH_BUILD_DIR:-$BENCH_REPO/build-bench}
BENCH_PERF=${BENCH_PERF:-0}   # 1: perf record sagad during each run (runs/NAME/perf.*)
BENCH_OUT=${BENCH_OUT:-$BENCH_DIR/results/$(date -u +%Y%m%dT%H%M%SZ)}
export SAGA_RUN_DIR=${SAGA_RUN_DIR:-/tmp/sagad-bench-run}
export SAGA_PG_PORT=${SAGA_PG_PORT:-55551}
export SAGA_AMQP_PORT=${SAGA_AMQP_PORT:-55851}
SAGAD_PIDS=()

mkdir -p "$BENCH_OUT/runs" "$SAGA_RUN_DIR"
BENCH_OUT=$(cd "$BENCH_OUT" && pwd)

jq -n --arg mode "$BENCH_MODE" --argjson quick "$BENCH_QUICK" --argjson sagas "$BENCH_SAGAS" \
    --argjson window "$BENCH_WINDOW" --arg workers "$BENCH_WORKERS" \
    --arg transports "$BENCH_TRANSPORTS" --argjson pgbench_s "$BENCH_PGBENCH_SECONDS" \
    --argjson half_s "$BENCH_HALF_SECONDS" --argjson kafka_props "$BENCH_KAFKA_PROPS" \
    --argjson prefetch "$BENCH_AMQP_PREFETCH" --arg commit "$(git -C "$BENCH_REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --arg cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" \
    --argjson cores "$(nproc)" --arg started "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    '{mode: $mode, quick: ($quick == 1), sagas: $sagas, window: $window,
      workers: ($workers | split(" ") | map(select(. != "") | tonumber)),
      transports: ($transports | split(" ") | map(select(. != ""))),
      pgbench_seconds: $pgbench_s, half_seconds: $half_s, sagad_kafka_properties: $kafka_props,
      sagad_amqp_prefetch: $prefetch, commit: $commit, cpu: $cpu, cores: $cores,
      started: $started}' >"$BENCH_OUT/settings.json"

cleanup() {
    ((${#SAGAD_PIDS[@]})) && bench_sagad_stop
    [[ $BENCH_KEEP_STACK == 1 ]] || bench_stack_down
}
trap cleanup EXIT

# ---- modes ----------------------------------------------------------------------

run_json() { cat "$BENCH_OUT/runs/$1/run.json"; }

mode_full() {
    local t w half n first
    first=$(set -- $BENCH_WORKERS; echo "$1")
    bench_pgbench
    for t in $BENCH_TRANSPORTS; do
        for w in $BENCH_WORKERS; do
            bench_measure "$t-w$w" "$t" "$w" --sagas "$BENCH_SAGAS" --window "$BENCH_WINDOW"
        done
        half=$(run_json "$t-w$first" | jq '.sagas_per_s / 2')
        n=$(jq -n --argjson r "$half" --argjson s "$BENCH_HALF_SECONDS" \
            '[($r * $s | floor), 100] | max')
        bench_measure "$t-half" "$t" "$first" --sagas "$n" --rate "$half"
    done
    bench_pgbench_again
    bash "$BENCH_DIR/report.sh" "$BENCH_OUT"
}

mode_pgbench() {
    bench_pgbench
    bench_pgbench_again
    cat "$BENCH_OUT/pgbench.json"
}

# Every saga started and its first command published, none answered: how
# much memory sagad holds with that many sagas in flight.
mode_memory() {
    # Paced: the Kafka dev broker keeps about 5 MB per partition and drops
    # older messages, so a flood of starts must not pile up in it.
    BENCH_SETTLE_SECONDS=3 bench_measure memory kafka 1 --sagas "$BENCH_MEMORY_SAGAS" \
        --rate "$BENCH_MEMORY_RATE" --no-answer
    local running
    running=$(bench_psql -d sagas -tAc "SELECT count(*) FROM sagas WHERE status = 'running'")
    run_json memory | jq --argjson limit "$BENCH_MEMORY_LIMIT_MB" --argjson running "$running" \
        '{mode: "memory", sagas: .driver.sagas, first_commands_received: .driver.first_commands,
          sagas_running_in_db: $running,
          sagad_rss_mb: (.sagad_rss_kb_at_end / 1024), sagad_peak_rss_mb: (.sagad_peak_rss_kb / 1024),
          limit_mb: $limit,
          pass: (.sagad_rss_kb_at_end / 1024 < $limit and $running == .driver.sagas)}' \
        | tee "$BENCH_OUT/results.json"
}

# One long run: are the last 10% of the sagas as fast as the first 10%?
mode_soak() {
    bench_measure soak kafka 1 --sagas "$BENCH_SOAK_SAGAS" --window "$BENCH_WINDOW"
    run_json soak | jq '{mode: "soak", sagas: .sagas, seconds: .seconds, sagas_per_s: .sagas_per_s,
        first_decile_sagas_per_s: .driver.deciles[0].sagas_per_s,
        last_decile_sagas_per_s: .driver.deciles[9].sagas_per_s,
        last_to_first: (.driver.deciles[9].sagas_per_s / .driver.deciles[0].sagas_per_s),
        pass: (.driver.deciles[9].sagas_per_s >= 0.9 * .driver.deciles[0].sagas_per_s),
        deciles: [.driver.deciles[] | {decile, sagas_per_s, p99_ms: .step_latency.p99_ms}],
        sagad_peak_rss_kb: .sagad_peak_rss_kb}' | tee "$BENCH_OUT/results.json"
}

main() {
    bench_say "mode $BENCH_MODE$([[ $BENCH_QUICK == 1 ]] && echo ' (quick)'), results in $BENCH_OUT"
    bench_build
    bench_stack_up
    case $BENCH_MODE in
    full) mode_full ;;
    pgbench) mode_pgbench ;;
    memory) mode_memory ;;
    soak) mode_soak ;;
    *) bench_fail "unknown BENCH_MODE '$BENCH_MODE' (full, memory, soak, pgbench)" ;;
    esac
    bench_say "done: $BENCH_OUT"
}

main "$@"
