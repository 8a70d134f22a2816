#!/usr/bin/env bash
# tests/run.sh: THE test command. From a fresh clone on Debian 12, as root:
#   1. installs the Debian packages (deploy/local/install-deps.sh)
#   2. configures and builds build/ (Debug), build-asan/ (ASan+UBSan) and,
#      when clang is there and tests/fuzz has fuzz_*.c, build-fuzz/
#   3. starts the local stack (deploy/local/start.sh) under SAGA_RUN_DIR
#      (default <repo>/.run) and stops it again on any exit
#   4. ctest -L 'unit|integration' in build-asan, ctest -L e2e in build
#      (the fault suite, tests/e2e/test_fault_*.sh, among them; its summary
#      is printed and written to build/fault-summary.md)
#   5. runs each fuzz target for SAGA_FUZZ_SECONDS (default 20); the long
#      run is tests/fuzz/long.sh
# then prints a summary; exits non-zero when any step failed.
# Knobs: SAGA_JOBS (build parallelism), SAGA_FUZZ_SECONDS, SAGA_SKIP_DEPS=1,
# SAGA_RUN_DIR and the port variables of deploy/local/common.sh.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1
export SAGA_RUN_DIR=${SAGA_RUN_DIR:-$REPO/.run}
JOBS=${SAGA_JOBS:-$(nproc)}
FUZZ_SECONDS=${SAGA_FUZZ_SECONDS:-20}
START=$(date +%s)
RESULTS=()
FAILED=0
NOTES=() # what a failed step wants said after the summary, where it is seen

export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1:print_stacktrace=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$REPO/tests/lsan.supp:print_suppressions=0}

banner() { printf '\n==== %s ====\n' "$*"; }

# Runs one step: step NAME COMMAND...; records PASS/FAIL with its duration.
step() {
    local name=$1 t0 rc
    shift
    banner "$name"
    t0=$(date +%s)
    "$@"
    rc=$?
    if ((rc == 0)); then
        RESULTS+=("PASS  $name ($(($(date +%s) - t0))s)")
    else
        RESULTS+=("FAIL  $name ($(($(date +%s) - t0))s, exit $rc)")
        FAILED=1
    fi
    return $rc
}

summary() {
    banner "summary"
    printf '  %s\n' "${RESULTS[@]}"
    printf '  total time: %ss\n' "$(($(date +%s) - START))"
    if ((FAILED)); then echo "  RESULT: FAILED"; else echo "  RESULT: PASSED"; fi
    if ((${#NOTES[@]})); then
        banner "about the failures"
        printf '%s\n' "${NOTES[@]}"
    fi
}

configure_build() {
    local dir=$1
    shift
    cmake -S "$REPO" -B "$REPO/$dir" -DCMAKE_BUILD_TYPE=Debug "$@" &&
        cmake --build "$REPO/$dir" -j"$JOBS"
}

has_fuzz_targets() {
    command -v clang >/dev/null && compgen -G "$REPO/tests/fuzz/fuzz_*.c" >/dev/null
}

build_fuzz() {
    CC=clang cmake -S "$REPO" -B "$REPO/build-fuzz" -DCMAKE_BUILD_TYPE=Debug -DSAGA_FUZZ=ON &&
        cmake --build "$REPO/build-fuzz" -j"$JOBS" --target fuzzers
}

STACK_STARTED=0

# On any exit: stop the stack if this run started it, then the summary.
finish() {
    if ((STACK_STARTED)); then
        banner "stopping the local stack"
        bash "$REPO/deploy/local/stop.sh" || echo "warning: stop.sh failed" >&2
    fi
    summary
}

start_stack() {
    STACK_STARTED=1
    bash "$REPO/deploy/local/start.sh" || return 1
    # shellcheck disable=SC1091
    source "$SAGA_RUN_DIR/env"
}

# One fuzz target over a scratch corpus seeded from tests/fuzz/corpus/<name>/
# (and the example definitions for fuzz_definition).
run_fuzzer() {
    local name=$1 bin=$REPO/build-fuzz/tests/fuzz/$1 corpus
    corpus=$(mktemp -d)
    [[ -d $REPO/tests/fuzz/corpus/$name ]] && cp -r "$REPO/tests/fuzz/corpus/$name/." "$corpus/"
    if [[ $name == fuzz_definition ]] && compgen -G "$REPO/sagas/*.json" >/dev/null; then
        cp "$REPO"/sagas/*.json "$corpus/"
    fi
    mkdir -p "$REPO/build-fuzz/artifacts"
    local log=$REPO/build-fuzz/artifacts/$name.log rc=0
    "$bin" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 \
        -artifact_prefix="$REPO/build-fuzz/artifacts/$name-" "$corpus" >"$log" 2>&1 || rc=$?
    if ((rc == 0)); then tail -n 8 "$log"; else cat "$log"; fi
    if ((rc != 0)); then
        # The reason, the seed and the input that failed, repeated after
        # the summary so that a short tail of the output still shows them.
        local crash note
        note="$name exited $rc: $(grep -m1 -E '^INFO: Seed:' "$log")"$'\n'
        note+=$(grep -m8 -E 'ERROR|runtime error|SUMMARY|deadly signal|Test unit written' "$log")
        for crash in "$REPO/build-fuzz/artifacts/$name-"*; do
            [[ -f $crash && $crash != *.log ]] || continue
            note+=$'\n'"input ${crash##*/}, base64: $(head -c 4096 "$crash" | base64 -w0)"
        done
        NOTES+=("$note")
    fi
    rm -rf "$corpus"
    return "$rc"
}

main() {
    trap finish EXIT
    trap 'exit 130' INT TERM
    if [[ ${SAGA_SKIP_DEPS:-0} != 1 ]]; then
        step "install dependencies" bash "$REPO/deploy/local/install-deps.sh" || exit 1
    fi
    step "build (Debug)" configure_build build || exit 1
    step "build (ASan+UBSan)" configure_build build-asan -DSAGA_SANITIZE=ON || exit 1
    if has_fuzz_targets; then
        step "build (fuzzers)" build_fuzz
    fi

    step "start the local stack" start_stack || exit 1

    step "ctest unit+integration (ASan+UBSan)" \
        ctest --test-dir "$REPO/build-asan" -L 'unit|integration' --output-on-failure --no-tests=error --timeout 600
    rm -f "$REPO/build/e2e-figures.txt"
    rm -rf "$REPO/build/fault-results"
    step "ctest e2e (Debug)" \
        ctest --test-dir "$REPO/build" -L e2e --output-on-failure --no-tests=error --timeout 900
    if [[ -s $REPO/build/e2e-figures.txt ]]; then
        banner "e2e figures"
        cat "$REPO/build/e2e-figures.txt"
    fi
    if compgen -G "$REPO/build/fault-results/*.txt" >/dev/null; then
        step "fault suite summary" \
            bash "$REPO/tests/e2e/faults/summary.sh" "$REPO/build/fault-results" "$REPO/build/fault-summary.md"
    fi

    if has_fuzz_targets && [[ -d $REPO/build-fuzz/tests/fuzz ]]; then
        local src name
        for src in "$REPO"/tests/fuzz/fuzz_*.c; do
            name=$(basename "$src" .c)
            step "fuzz $name (${FUZZ_SECONDS}s)" run_fuzzer "$name"
        done
    fi
    exit "$FAILED"
}

main "$@"
