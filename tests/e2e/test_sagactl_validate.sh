#!/usr/bin/env bash
# sagactl validate: "ok" lines on stdout for valid files, every problem on
# stderr for the others, exit 0 / 1 / 2, --json, --help; no database needed.
set -uo pipefail
src=${SAGA_SOURCE_DIR:?SAGA_SOURCE_DIR must be set}
bin=${SAGA_BINARY_DIR:?SAGA_BINARY_DIR must be set}/orchestrator/sagactl
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# run ARGS...: sets $rc, $out, $err
run() {
    "$bin" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    out=$(cat "$tmp/out")
    err=$(cat "$tmp/err")
}

expect_rc() { [ "$rc" -eq "$1" ] || fail "$2: exit $rc, want $1 (stderr: $err)"; }
expect_eq() { [ "$1" == "$2" ] || fail "$3: got [$1] want [$2]"; }

# No database is needed, even with a bad one configured.
export SAGA_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none"

# 1. the examples are valid; one ok line each, with the hash
run validate "$src"/sagas/*.json
expect_rc 0 "examples"
expect_eq "$err" "" "examples stderr"
n=$(ls "$src"/sagas/*.json | wc -l)
expect_eq "$(grep -cE '^ok .+\.json: [a-z][a-z0-9_]* v[0-9]+ sha256 [0-9a-f]{64}$' <<<"$out")" "$n" "examples ok lines"
grep -qE "^ok $src/sagas/order_fulfillment.json: order_fulfillment v2 sha256 [0-9a-f]{64}$" <<<"$out" ||
    fail "order_fulfillment ok line: $out"

# 2. the hash is the SHA-256 of the canonical JSON (sorted keys, no spaces)
want=$(/usr/bin/python3 -c '
import json, hashlib, sys
doc = json.load(open(sys.argv[1]))
text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
print(hashlib.sha256(text.encode()).hexdigest())' "$src/sagas/order_fulfillment.json")
grep -q "order_fulfillment v2 sha256 $want\$" <<<"$out" || fail "hash is not sha256 of canonical JSON ($want): $out"

# 3. a file with several problems: all of them, exit 1, nothing on stdout
cat >"$tmp/order.json" <<'JSON'
{"name": "order", "version": 1,
 "steps": [
   {"name": "charge", "command": {"type": "pay", "channel": "kafka:pay"}},
   {"name": "charge", "command": {"type": "pay", "channel": "kafka:pay"}},
   {"name": "ship", "command": {"type": "ship", "channel": "kafak:ship"}, "colour": "red"}
 ]}
JSON
run validate "$tmp/order.json"
expect_rc 1 "bad file"
expect_eq "$out" "" "bad file stdout"
expect_eq "$err" 'order.json: $.steps[1].name: duplicate step "charge" (first at $.steps[0])
order.json: $.steps[2].command.channel: unknown transport "kafak"
order.json: $.steps[2].colour: unknown key "colour"' "bad file stderr"

# 4. a JSON syntax error has line and column
printf '{"name": "x",\n  "version": 1,\n  "steps": [}\n' >"$tmp/syntax.json"
run validate "$tmp/syntax.json"
expect_rc 1 "syntax error"
grep -qE '^syntax\.json: line 3, column [0-9]+: ' <<<"$err" || fail "syntax error message: $err"

# 5. good and bad together: ok line for the good one, exit 1
run validate "$src/sagas/greeting.json" "$tmp/order.json" "$tmp/missing.json"
expect_rc 1 "mixed"
grep -q "^ok $src/sagas/greeting.json: greeting v1 sha256 " <<<"$out" || fail "mixed stdout: $out"
grep -q '^missing.json: cannot read file: No such file or directory$' <<<"$err" || fail "missing file: $err"
expect_eq "$(wc -l <<<"$err")" "4" "mixed stderr lines"

# 6. same name and version with other content: refused, bump version
sed 's/"greeting.compose"/"greeting.write"/' "$src/sagas/greeting.json" >"$tmp/greeting2.json"
run validate "$src/sagas/greeting.json" "$tmp/greeting2.json"
expect_rc 1 "version conflict"
expect_eq "$err" 'greeting2.json: $.version: "greeting" version 1 in "greeting2.json" differs from the one in "greeting.json": bump "version" to change a definition' "version conflict"

# 7. --json: one array with every file
run validate --json "$src/sagas/greeting.json" "$tmp/order.json"
expect_rc 1 "json"
/usr/bin/python3 - "$tmp/out" "$src/sagas/greeting.json" <<'PY' || fail "json output: $out"
import json, sys
doc = json.load(open(sys.argv[1]))
assert isinstance(doc, list) and len(doc) == 2, doc
good, bad = doc
assert good["file"] == sys.argv[2] and good["ok"] is True, good
assert good["name"] == "greeting" and good["version"] == 1 and len(good["sha256"]) == 64, good
assert good["errors"] == [], good
assert bad["ok"] is False and bad["name"] is None and bad["version"] is None and bad["sha256"] is None, bad
assert len(bad["errors"]) == 3 and bad["errors"][1] == 'order.json: $.steps[2].command.channel: unknown transport "kafak"', bad
PY

# 8. usage errors and help
run validate
expect_rc 2 "no files"
grep -q '^usage: sagactl validate' <<<"$err" || fail "no files usage: $err"
run validate --frobnicate "$src/sagas/greeting.json"
expect_rc 2 "unknown option"
grep -q "unknown option '--frobnicate'" <<<"$err" || fail "unknown option message: $err"
run validate --help
expect_rc 0 "help"
grep -q '^usage: sagactl validate' <<<"$out" || fail "help on stdout: $out"

[ "$failures" -eq 0 ] && echo "all sagactl validate checks passed"
exit $((failures > 0))
