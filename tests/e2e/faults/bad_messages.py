#!/usr/bin/env python3
"""bad_messages.py: writes messages sagad must refuse and dead-letter, for
the flood scenario (test_fault_flood.sh).

    bad_messages.py --count N --seed S --max-bytes M --out DIR

DIR/bad-K.lines  the messages, one per line, in files of up to 50 (each
                 line is sent byte for byte: no line holds a newline, none
                 ends with a carriage return)
DIR/md5          the md5 (hex) of each message's bytes, one per line
DIR/kinds        how many of each kind

Every message is unique (it carries its number), so its md5 finds it in
the dead_letters table. Kinds: not JSON, truncated JSON, a JSON value that
is not an object, an object that is not a CloudEvent, a CloudEvent with a
missing attribute, a wrong specversion, an unknown type, an unknown saga
type, a reply for an unknown saga, oversized (a valid start, over M
bytes), invalid UTF-8, a NUL byte, nested deeper than sagad's limit,
duplicate keys, random bytes."""
import argparse
import hashlib
import json
import os
import random


def event(**attrs):
    return json.dumps(attrs, separators=(",", ":")).encode()


def kinds(rng, i, max_bytes):
    tag = "bad-%d" % i
    start = dict(specversion="1.0", id=tag, source="urn:fault-flood", type="saga.start",
                 sagatype="greeting", sagaid=tag)
    deep = rng.randint(65, 3000)
    yield "not_json", ("this is not JSON, message %d" % i).encode()
    yield "truncated_json", event(**start)[: rng.randint(5, 60)] + (" %d" % i).encode()
    yield "not_an_object", ("[1, 2, 3, %d]" % i).encode()
    yield "not_a_cloudevent", event(hello="world", n=i)
    missing = dict(start, data={"name": "x"})
    del missing[rng.choice(["source", "type", "specversion", "id"])]
    missing["id" if "id" in missing else "source"] = tag
    yield "missing_attribute", event(**missing)
    yield "wrong_specversion", event(**dict(start, specversion="0.3", data={}))
    yield "unknown_type", event(**dict(start, type="saga.frobnicate", data={}))
    yield "unknown_sagatype", event(**dict(start, sagatype="no_such_saga", data={}))
    yield "reply_unknown_saga", event(specversion="1.0", id=tag, source="urn:fault-flood",
                                      type="saga.reply", sagaid="ghost-%d" % i, sagastep="compose",
                                      causationid="ghost-%d/compose/do/1" % i, outcome="success",
                                      data={})
    pad = "x" * (max_bytes + rng.randint(1, max_bytes))
    yield "oversized", event(**dict(start, data={"name": pad}))
    bad_utf8 = rng.choice([b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\x80"])
    yield "invalid_utf8", event(**dict(start, data={"name": "@@"})).replace(b"@@", bad_utf8)
    yield "nul_byte", event(**dict(start, data={"name": "@@"})).replace(b"@@", b"a\x00b")
    yield "nested_too_deep", event(**dict(start, data={})).replace(
        b'"data":{}', b'"data":' + b'{"a":' * deep + b"1" + b"}" * deep)
    yield "deep_array", b"[" * (deep * 10) + str(i).encode() + b"]" * (deep * 10)
    yield "duplicate_keys", ('{"specversion":"1.0","id":"%s","id":"%s-again","source":"x",'
                             '"type":"saga.start","sagatype":"greeting","data":{}}' % (tag, tag)).encode()
    noise = bytes(b for b in rng.randbytes(rng.randint(1, 300)) if b not in (10, 13))
    yield "random_bytes", noise + (" %d" % i).encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--max-bytes", type=int, required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    os.makedirs(a.out, exist_ok=True)
    msgs, counts, i = [], {}, 0
    while len(msgs) < a.count:
        i += 1
        for kind, raw in kinds(rng, i, a.max_bytes):
            if len(msgs) < a.count:
                assert b"\n" not in raw and not raw.endswith(b"\r")
                msgs.append(raw)
                counts[kind] = counts.get(kind, 0) + 1
    rng.shuffle(msgs)
    for k in range(0, len(msgs), 50):
        with open(os.path.join(a.out, "bad-%d.lines" % (k // 50)), "wb") as f:
            f.write(b"".join(m + b"\n" for m in msgs[k:k + 50]))
    with open(os.path.join(a.out, "md5"), "w") as f:
        f.write("".join(hashlib.md5(m).hexdigest() + "\n" for m in msgs))
    with open(os.path.join(a.out, "kinds"), "w") as f:
        f.write("".join("%s %d\n" % kv for kv in sorted(counts.items())))


if __name__ == "__main__":
    main()
