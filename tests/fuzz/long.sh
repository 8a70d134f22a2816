#!/usr/bin/env bash
# tests/fuzz/long.sh: the long fuzzing run, separate from the test command
# (tests/run.sh fuzzes each target for SAGA_FUZZ_SECONDS, 20 s by default).
#
#   FUZZ_SECONDS=600 tests/fuzz/long.sh [TARGET...]
#
# Builds build-fuzz/ (clang, libFuzzer with ASan and UBSan) when needed, then
# runs each target (default: every tests/fuzz/fuzz_*.c; fuzz_envelope is the
# CloudEvents decoder, fuzz_definition the definition loader) for
# FUZZ_SECONDS (default 600) on FUZZ_JOBS processes (default 1). The corpus
# of each target is kept in build-fuzz/corpus/<target>/, seeded from
# tests/fuzz/corpus/<target>/ (and sagas/*.json for fuzz_definition), so
# every run goes on from what the earlier ones found. A crash, leak or
# timeout leaves its input in build-fuzz/artifacts/ and makes the exit
# status 1; replay it with build-fuzz/tests/fuzz/<target> <file>.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SECONDS_EACH=${FUZZ_SECONDS:-600}
JOBS=${FUZZ_JOBS:-1}
BUILD=$REPO/build-fuzz

command -v clang >/dev/null || { echo "long.sh: clang is needed (apt-get install clang)" >&2; exit 2; }
if [[ ! -d $BUILD/tests/fuzz ]] || ! compgen -G "$BUILD/tests/fuzz/fuzz_*" >/dev/null; then
    CC=clang cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DSAGA_FUZZ=ON >/dev/null || exit 1
fi
cmake --build "$BUILD" -j"$(nproc)" --target fuzzers || exit 1

targets=("$@")
if ((${#targets[@]} == 0)); then
    for src in "$REPO"/tests/fuzz/fuzz_*.c; do targets+=("$(basename "$src" .c)"); done
fi

failed=0
mkdir -p "$BUILD/artifacts"
for name in "${targets[@]}"; do
    bin=$BUILD/tests/fuzz/$name
    [[ -x $bin ]] || { echo "long.sh: no fuzz target $name" >&2; failed=1; continue; }
    corpus=$BUILD/corpus/$name
    mkdir -p "$corpus"
    [[ -d $REPO/tests/fuzz/corpus/$name ]] && cp -rn "$REPO/tests/fuzz/corpus/$name/." "$corpus/"
    if [[ $name == fuzz_definition ]] && compgen -G "$REPO/sagas/*.json" >/dev/null; then
        cp -n "$REPO"/sagas/*.json "$corpus/"
    fi
    log=$BUILD/artifacts/$name-long.log
    echo "==== $name: ${SECONDS_EACH}s on $JOBS process(es), corpus $corpus ($(ls "$corpus" | wc -l) inputs)"
    rc=0
    if ((JOBS > 1)); then
        "$bin" -max_total_time="$SECONDS_EACH" -print_final_stats=1 -jobs="$JOBS" -workers="$JOBS" \
            -artifact_prefix="$BUILD/artifacts/$name-" "$corpus" >"$log" 2>&1 || rc=$?
    else
        "$bin" -max_total_time="$SECONDS_EACH" -print_final_stats=1 \
            -artifact_prefix="$BUILD/artifacts/$name-" "$corpus" >"$log" 2>&1 || rc=$?
    fi
    if ((rc == 0)); then
        grep -E "^stat::number_of_executed_units|^stat::new_units_added|^Done" "$log" | sed 's/^/  /'
        echo "  $name: no crash in ${SECONDS_EACH}s ($(ls "$corpus" | wc -l) inputs in the corpus now)"
    else
        tail -n 40 "$log"
        echo "  $name: FAILED (exit $rc), see $log and $BUILD/artifacts/"
        failed=1
    fi
done
exit "$failed"
