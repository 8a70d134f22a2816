#!/usr/bin/env bash
# summary.sh [RESULTS_DIR] [OUT]: the fault suite's summary, from the
# scenario lines the scenarios wrote (faults/lib.sh fault_record; default
# folder $SAGA_BINARY_DIR/fault-results, else build/fault-results): one
# row per scenario, then the totals: sagas run, faults injected by kind,
# commands and effects checked, lost, duplicated, dead letters against the
# injected ones. Printed, and written as Markdown to OUT (default
# RESULTS_DIR/../fault-summary.md) for the README. Exit 1 when a scenario
# reported a violation, a loss or a duplicate, 2 when there is nothing to
# summarize.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=${1:-${SAGA_BINARY_DIR:-$here/../../../build}/fault-results}
[[ -d $dir ]] && compgen -G "$dir/*.txt" >/dev/null || { echo "summary: no results in $dir" >&2; exit 2; }
dir=$(cd "$dir" && pwd)
out=${2:-$(dirname "$dir")/fault-summary.md}

# key=value words of every result line, as awk input
awk '
function val(k) { return (k in f) ? f[k] : 0 }
{
    delete f
    for (i = 1; i <= NF; i++) { n = index($i, "="); if (n) f[substr($i, 1, n - 1)] = substr($i, n + 1) }
    split(f["dead_letters"], dl, "/")
    faults = 0
    nk = split(f["faults"], kinds, ",")
    for (i = 1; i <= nk; i++) {
        n = index(kinds[i], "="); if (!n) continue
        k = substr(kinds[i], 1, n - 1); c = substr(kinds[i], n + 1)
        bykind[k] += c; faults += c
    }
    row[++rows] = sprintf("| %s | %s | %d | %d / %d / %d | %d | %d | %d | %d | %d | %d/%d | %d | %s |",
        f["scenario"], f["seed"], val("sagas"), val("completed"), val("compensated"), val("failed"),
        val("commands"), val("effects"), faults, val("lost"), val("duplicated"), dl[1], dl[2],
        val("violations"), f["time"])
    sagas += val("sagas"); commands += val("commands"); effects += val("effects")
    redelivered += val("redelivered"); ignored += val("ignored_inputs")
    lost += val("lost"); dup += val("duplicated"); dlgot += dl[1]; dlwant += dl[2]
    viol += val("violations"); total_faults += faults
}
END {
    print "| scenario | seed | sagas | completed / compensated / failed | commands | effects | faults | lost | duplicated | dead letters | violations | time |"
    print "|---|---|---|---|---|---|---|---|---|---|---|---|"
    for (i = 1; i <= rows; i++) print row[i]
    print ""
    printf "- scenarios: %d, sagas run: %d\n", rows, sagas
    printf "- faults injected: %d\n", total_faults
    for (k in bykind) printf "  - %s: %d\n", k, bykind[k] | "sort"
    close("sort")
    printf "- commands checked: %d (each one a saga recorded as sent reached the participant, none other; %d were delivered more than once and deduplicated by id)\n", commands, redelivered
    printf "- effects checked: %d; answers ignored as late, repeated or stale: %d\n", effects, ignored
    printf "- lost = %d, duplicated effects = %d, invariant violations = %d\n", lost, dup, viol
    printf "- dead letters: %d of the %d bad messages injected, and nothing else\n", dlgot, dlwant
    exit (lost || dup || viol || dlgot != dlwant) ? 1 : 0
}' "$dir"/*.txt >"$out.tmp" && rc=0 || rc=$?
mv "$out.tmp" "$out"
cat "$out"
echo
echo "summary written to $out"
exit "$rc"
