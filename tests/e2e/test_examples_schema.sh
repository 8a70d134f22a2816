#!/usr/bin/env bash
# Every example definition in sagas/ validates against the JSON Schema
# sagas/schema/saga-definition.schema.json (draft 2020-12), the schema is
# itself valid, and it refuses a few definitions that break its rules.
# Needs Debian's python3-jsonschema.
set -euo pipefail
src=${SAGA_SOURCE_DIR:?SAGA_SOURCE_DIR must be set}

/usr/bin/python3 - "$src" <<'PY'
import glob, json, os, sys
from jsonschema import Draft202012Validator

src = sys.argv[1]
with open(os.path.join(src, "sagas/schema/saga-definition.schema.json")) as f:
    schema = json.load(f)
Draft202012Validator.check_schema(schema)
validator = Draft202012Validator(schema)

failed = 0
examples = sorted(glob.glob(os.path.join(src, "sagas/*.json")))
if len(examples) < 3:
    print(f"expected at least 3 examples, found {len(examples)}")
    sys.exit(1)
for path in examples:
    with open(path) as f:
        doc = json.load(f)
    errors = list(validator.iter_errors(doc))
    for e in errors:
        print(f"{os.path.basename(path)}: {e.json_path}: {e.message}")
    failed += bool(errors)
    if not errors:
        print(f"ok {os.path.basename(path)}")

step = {"name": "a", "command": {"type": "t", "channel": "kafka:t"}}
def saga(**over):
    doc = {"name": "s", "version": 1, "steps": [dict(step)]}
    doc.update(over)
    return doc
bad = {
    "unknown transport": saga(steps=[{"name": "a", "command": {"type": "t", "channel": "kafak:t"}}]),
    "unknown key": saga(colour="red"),
    "version zero": saga(version=0),
    "bad name": saga(name="Order"),
    "bad duration": saga(timeout="30"),
    "empty steps": saga(steps=[]),
    "group of one": saga(steps=[{"name": "g", "parallel": [step]}]),
    "pivot in a group": saga(steps=[{"name": "g", "parallel": [dict(step, pivot=True), dict(step, name="b")]}]),
    "nested group": saga(steps=[{"name": "g", "parallel": [step, {"name": "h", "parallel": [step, step]}]}]),
    "zero attempts": saga(defaults={"retry": {"max_attempts": 0}}),
    "empty queue": saga(steps=[{"name": "a", "command": {"type": "t", "channel": "amqp:/"}}]),
}
for what, doc in bad.items():
    if validator.is_valid(doc):
        print(f"schema accepts a definition with {what}")
        failed += 1
sys.exit(1 if failed else 0)
PY
