#!/usr/bin/env bash
# check_invariants.sh: checks, once a fault scenario has drained, that
# nothing was lost and nothing happened twice (check_invariants.sql says
# each check). Prints one line per check and a FIGURES line; exit 0 when
# every check holds, 1 when one does not, 2 on a usage error.
#
#   check_invariants.sh --db URL --sagas N [--expected FILE] [--dead-letters FILE]
#
#   --expected FILE       lines "PREFIX STATUS[,STATUS...]": the final
#                         statuses allowed for saga ids starting with PREFIX
#                         (the longest prefix wins; "ID$" names one saga and
#                         wins over prefixes); other sagas must end
#                         completed or compensated
#   --dead-letters FILE   the messages injected to be dead-lettered, one
#                         md5 (hex) of the raw bytes per line; without it,
#                         no message may have been dead-lettered
#   --before FILE         SQL run first, in the checker's transaction (rolled
#                         back): the checker's own test breaks data with it
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
db="" sagas="" expected="" dead="" before=/dev/null

usage() {
    sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

while (($#)); do
    case $1 in
    --db) db=$2; shift 2 ;;
    --sagas) sagas=$2; shift 2 ;;
    --expected) expected=$2; shift 2 ;;
    --dead-letters) dead=$2; shift 2 ;;
    --before) before=$2; shift 2 ;;
    *) usage ;;
    esac
done
[[ -n $db && $sagas =~ ^[0-9]+$ ]] || usage

# VALUES lists for psql; the inputs are checked, so nothing needs quoting.
values_expected="(NULL::text, NULL::text)"
if [[ -n $expected ]]; then
    while read -r prefix statuses; do
        [[ -z $prefix || $prefix == \#* ]] && continue
        [[ $prefix =~ ^[A-Za-z0-9._-]+\$?$ && $statuses =~ ^[a-z,]+$ ]] ||
            { echo "check_invariants: bad line in $expected: $prefix $statuses" >&2; exit 2; }
        values_expected+=", ('$prefix', '$statuses')"
    done <"$expected"
fi
values_dead="(NULL::text)"
if [[ -n $dead ]]; then
    while read -r m; do
        [[ -z $m ]] && continue
        [[ $m =~ ^[0-9a-f]{32}$ ]] || { echo "check_invariants: bad md5 in $dead: $m" >&2; exit 2; }
        values_dead+=", ('$m')"
    done <"$dead"
fi

out=$(psql "$db" -X -q -v sagas="$sagas" -v expected="$values_expected" -v dead="$values_dead" -v before="$before" \
    -f "$here/check_invariants.sql") || { echo "check_invariants: the checks could not run" >&2; exit 1; }

failed=0
while IFS='|' read -r kind name n examples what; do
    case $kind in
    CHECK)
        if [[ $n == 0 ]]; then
            printf 'ok    %-42s %s\n' "$name" "$what"
        else
            printf 'FAIL  %-42s %s violation(s): %s (%s)\n' "$name" "$n" "$what" "$examples"
            failed=1
        fi
        ;;
    FIGURES) echo "FIGURES $name" ;;
    esac
done <<<"$out"
exit "$failed"
