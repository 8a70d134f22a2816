#!/usr/bin/env bash
# suite.sh: runs the fault-injection suite (every tests/e2e/test_fault_*.sh,
# through ctest, one at a time: they restart the stack's services) and
# prints its summary (summary.sh), also written to <build>/fault-summary.md.
#
#   tests/e2e/faults/suite.sh [BUILD_DIR]          the default run (~8 min)
#   SOAK=1 tests/e2e/faults/suite.sh [BUILD_DIR]   five times the sagas and
#                                                  longer fault phases
#   FAULT_SEED=N ...                               the same seed everywhere
#
# Needs the local stack running with its env file sourced
# (deploy/local/start.sh; source $SAGA_RUN_DIR/env) and BUILD_DIR (default
# build/) built. A single scenario: bash tests/e2e/test_fault_<name>.sh with
# SAGA_SOURCE_DIR and SAGA_BINARY_DIR set; it prints its seed, and
# FAULT_SEED=<seed> replays its random choices.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
BUILD=$(cd "${1:-$REPO/build}" && pwd) || exit 2
[[ -n ${SAGA_DATABASE_URL:-} ]] || { echo "suite: source the stack's env file first" >&2; exit 2; }
rm -rf "$BUILD/fault-results"
timeout=900
[[ ${SOAK:-0} == 1 ]] && timeout=3600
t0=$(date +%s)
ctest --test-dir "$BUILD" -R '^e2e/test_fault_' --output-on-failure --timeout "$timeout"
rc=$?
echo
echo "fault suite: $(($(date +%s) - t0)) s, ctest exit status $rc"
bash "$REPO/tests/e2e/faults/summary.sh" "$BUILD/fault-results" "$BUILD/fault-summary.md" || rc=1
exit "$rc"
