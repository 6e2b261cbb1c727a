#!/usr/bin/env python3
"""The streaming JSON decoder (src/runtime/json_decode.c) against the jsonb path.

stream_internal._json_decode_check(schema, record) decodes a record onto a
schema both ways (stream.json_fast_decode off, then the scanner) and returns
'fast' (the scanner decided: the same values, NULLs, present columns, or the
same SQLSTATE and message), 'general' (the scanner declined: the jsonb path
decides alone) or 'DIFF: ...'.  Over seeded random and adversarial records
(numbers at each type's edges, exponents, -0, huge numbers, escapes, \\u
surrogates paired and lone, \\u0000, invalid UTF-8, duplicate keys and keys
differing in case, nested values where a scalar is expected, nulls, missing
fields, whitespace everywhere, non-object tops, truncations, 10-byte and
1 MiB records), under two TimeZone/DateStyle settings: no DIFF anywhere, and
the scanner decides most well-formed records (it is not declining its way
to agreement).

    STREAM_JSON_DIFF_SEED=7 STREAM_JSON_DIFF_N=3000 python3 test/scripts/84_json_decode_diff.py
"""
import os
import random
import sys

import psycopg2

SEED = int(os.environ.get("STREAM_JSON_DIFF_SEED", "20261202"))
N = int(os.environ.get("STREAM_JSON_DIFF_N", "3000"))
DB = "stream_json_diff_test"
rnd = random.Random(SEED)

COLS = [("id", "bigint"), ("i4", "integer"), ("i2", "smallint"), ("n", "numeric"),
        ("amount", "numeric(12,2)"), ("name", "text"), ("v5", "varchar(5)"),
        ("ts", "timestamptz"), ("ts3", "timestamptz(3)"), ("tsn", "timestamp"),
        ("flag", "boolean"), ("f8", "float8"), ("j", "jsonb"), ("d", "date"),
        ("\"MixedCase\"", "text"), ("ünï", "text")]
KEYS = ["id", "i4", "i2", "n", "amount", "name", "v5", "ts", "ts3", "tsn", "flag", "f8",
        "j", "d", "mixedcase", "ünï"]

INTS = ["0", "1", "-1", "9223372036854775807", "-9223372036854775808", "9223372036854775808",
        "-9223372036854775809", "2147483647", "2147483648", "-2147483648", "-2147483649",
        "32767", "32768", "-32768", "-32769", "123456789012345678", "1234567890123456789",
        "99999999999999999999999", "-0", "-0.0", "0.0", "1.0", "1.5", "-1.50", "1e3", "1E+2",
        "1e-2", "-1.5e10", "1e400", "1e-400", "1" * 300, "0." + "0" * 50 + "1", "12.345",
        "1234567890.12", "12345678901.23", "0.005", "0.015", "-0.005", "01", "1.", ".5", "+1",
        "-", "1e", "0x10", "Infinity", "NaN", "1_000"]
STRS = ["", "plain", "name-1-abc", "a\\\"b", "back\\\\slash", "sl\\/ash", "\\b\\f\\n\\r\\t",
        "\\u0041", "\\u00e9", "\\u20ac", "\\ud83d\\ude00", "\\uD83D\\uDE00", "\\ud83d", "\\ude00",
        "\\ud83d\\u0041", "\\u0000", "x\\u0000y", "\\u00", "\\uZZZZ", "\\x", "é", "日本語",
        "😀", "tab\there", "nl\nhere", "12", "-7", "1.25", "true", "FALSE", "t", "yes", "abcdef",
        "abcde", "2024-02-29", "2023-02-29", "allballs", "  12  ", "\\u00e9\\u00e9\\u00e9"]
TS = ["2024-01-01T00:00:00Z", "2024-01-01 00:00:00Z", "2024-01-01T00:00:00.5Z",
      "2024-01-01T00:00:00.123456Z", "2024-01-01T00:00:00.1234567Z", "2024-01-01T00:00:00.999999Z",
      "2024-06-30T23:59:59+05:30", "2024-06-30T23:59:59+0530", "2024-06-30T23:59:59+05",
      "2024-06-30T23:59:59-14:00", "2024-06-30T23:59:59+14:59", "2024-06-30T23:59:59+15:00",
      "2024-06-30T23:59:59-15:59", "2024-02-29T12:00:00Z", "2023-02-29T12:00:00Z",
      "2024-13-01T00:00:00Z", "2024-04-31T00:00:00Z", "2024-01-01T24:00:00Z",
      "2024-01-01T23:59:60Z", "0000-01-01T00:00:00Z", "0001-01-01T00:00:00Z",
      "9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59-14:00", "2024-01-01t00:00:00z",
      "2024-01-01T00:00:00", "2024-01-01T00:00:00.Z", "2024-01-01T00:00Z", "2024-01-01",
      "1900-03-01T00:00:00Z", "2000-02-29T00:00:00Z", "2100-02-29T00:00:00Z",
      "2024-01-01T00:00:00+05:3", "2024-01-01T00:00:00+5", "2024-01-01T00:00:00 Z",
      "2024-01-01T00:00:00UTC", "2024-01-01T00:00:00+01:00:00", "epoch", "infinity",
      "2024-01-01T00:00:00Z ", "1999-12-31T23:59:59.000001-00:30"]
WS = ["", " ", "\n", "\t", "\r\n", "  \t "]


def ws():
    return rnd.choice(WS) if rnd.random() < 0.3 else ""


def rand_ts():
    if rnd.random() < 0.5:
        return rnd.choice(TS)
    y = rnd.randint(1, 9999)
    s = "%04d-%02d-%02d%s%02d:%02d:%02d" % (y, rnd.randint(1, 12), rnd.randint(1, 31),
                                           rnd.choice("T T"), rnd.randint(0, 23),
                                           rnd.randint(0, 59), rnd.randint(0, 59))
    if rnd.random() < 0.5:
        s += "." + "".join(rnd.choice("0123456789") for _ in range(rnd.randint(1, 7)))
    s += rnd.choice(["Z", "+00:00", "-03:30", "+0845", "+12", "-11", ""])
    return s


def rand_num():
    r = rnd.random()
    if r < 0.4:
        return rnd.choice(INTS)
    if r < 0.7:
        return str(rnd.randint(-2**63, 2**63))
    if r < 0.85:
        return "%d.%0*d" % (rnd.randint(-10**12, 10**12), rnd.randint(1, 4), rnd.randint(0, 9999))
    return str(rnd.randint(-2**15 - 5, 2**15 + 5))


def rand_value(depth=0):
    r = rnd.random()
    if r < 0.25:
        return rand_num()
    if r < 0.5:
        return '"' + rnd.choice(STRS) + '"'
    if r < 0.62:
        return '"' + rand_ts() + '"'
    if r < 0.72:
        return rnd.choice(["true", "false", "null", "tru", "nul", "True", "truex"])
    if r < 0.80 and depth < 3:
        return "[" + ws() + ",".join(ws() + rand_value(depth + 1) + ws() for _ in range(rnd.randint(0, 3))) + "]"
    if r < 0.88 and depth < 3:
        return "{" + ",".join(ws() + '"' + rnd.choice(KEYS + ["x", "y"]) + '"' + ws() + ":" + ws()
                              + rand_value(depth + 1) for _ in range(rnd.randint(0, 3))) + "}"
    return '"' + rnd.choice(STRS) + '"'


def typed_value(key):
    """A value that suits the column (mostly), so the fast path gets exercised."""
    if rnd.random() < 0.3:
        return rand_value()
    if key in ("id", "i4", "i2"):
        return rand_num() if rnd.random() < 0.3 else str(rnd.randint(-30000, 30000))
    if key in ("n", "amount", "f8"):
        return rand_num()
    if key in ("ts", "ts3", "tsn"):
        return '"' + rand_ts() + '"'
    if key == "flag":
        return rnd.choice(["true", "false", "null"])
    if key == "d":
        return '"' + rnd.choice(["2024-01-01", "2024-02-30", "1999-12-31"]) + '"'
    return '"' + "".join(rnd.choice(STRS) for _ in range(rnd.randint(0, 3))) + '"'


def key_variant(k):
    r = rnd.random()
    if r < 0.05:
        return k.upper()
    if r < 0.08:
        return k.capitalize()
    if r < 0.10:
        return k.replace("i", "\\u0069", 1) if "i" in k else k
    return k


def rand_record():
    keys = rnd.sample(KEYS, rnd.randint(0, len(KEYS)))
    if rnd.random() < 0.1 and keys:
        keys.append(rnd.choice(keys))            # a duplicate key: jsonb keeps the last
    for _ in range(rnd.randint(0, 3)):
        keys.insert(rnd.randint(0, len(keys)), rnd.choice(["extra", "nested", "zz", "Id2"]))
    parts = []
    for k in keys:
        v = typed_value(k) if k in KEYS else rand_value()
        parts.append(ws() + '"' + key_variant(k) + '"' + ws() + ":" + ws() + v + ws())
    rec = ws() + "{" + ",".join(parts) + "}" + ws()
    r = rnd.random()
    if r < 0.04:
        rec = rec[:rnd.randint(0, len(rec))]     # truncated
    elif r < 0.06:
        rec = rec.replace("}", ",}", 1)          # trailing comma
    elif r < 0.08:
        rec = rnd.choice(["[1,2]", '"str"', "12", "null", "", "   ", "{}", "{} {}", "{}x", "{\"id\":1}}"])
    b = rec.encode("utf-8")
    if rnd.random() < 0.03 and len(b) > 2:      # invalid UTF-8 somewhere
        i = rnd.randint(0, len(b) - 1)
        b = b[:i] + rnd.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"]) + b[i:]
    return b


def fixed_records():
    out = [b'{"id":1}', b'{"a":1}', b'{}', b'{"name":"x"}']          # about 10 bytes
    big = "x" * (1024 * 1024)
    out.append(('{"id": 7, "name": "%s", "extra": "%s"}' % (big, big[:1000])).encode())
    out.append(('{"extra": "%s", "id": 8}' % big).encode())
    out.append(('{"id": 9, "name": "%s"}' % ("\\u00e9" * 200000)).encode())
    out.append(('{"id": 10, "deep": %s1%s}' % ("[" * 100, "]" * 100)).encode())
    out.append(('{"id": 11, "deep": %s1%s}' % ("[" * 10, "]" * 10)).encode())
    for k in KEYS:
        for v in INTS + ['"%s"' % s for s in STRS] + ['"%s"' % t for t in TS] + \
                ["true", "false", "null", "[]", "{}", "[1]", '{"a":1}']:
            out.append(('{"%s":%s}' % (k, v)).encode())
    return out


def main():
    admin = psycopg2.connect("dbname=postgres")
    admin.autocommit = True
    ac = admin.cursor()
    ac.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    ac.execute(f"CREATE DATABASE {DB} TEMPLATE template0 ENCODING 'UTF8'")
    conn = psycopg2.connect(f"dbname={DB}")
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("CREATE EXTENSION stream")
    cur.execute("CREATE TYPE public.r AS (%s)" % ", ".join("%s %s" % c for c in COLS))
    # two columns one key matches: the scanner stays out of it
    cur.execute('CREATE TYPE public.r2 AS ("ID" bigint, id bigint, name text)')
    cur.execute("CREATE TYPE public.bench_row AS (id bigint, name text, amount numeric(12,2), ts timestamptz, flag boolean)")

    recs = fixed_records() + [rand_record() for _ in range(N)]
    counts = {}
    diffs = []
    wellformed_fast = wellformed = 0
    settings = [("UTC", "ISO, MDY"), ("America/New_York", "SQL, DMY")]
    for tz, ds in settings:
        cur.execute("SET TimeZone = %s", (tz,))
        cur.execute("SET DateStyle = %s", (ds,))
        for schema in ("public.r", "public.r2", "public.bench_row"):
            for i in range(0, len(recs), 200):
                chunk = recs[i:i + 200]
                cur.execute("SELECT stream_internal._json_decode_check(%s::regtype, x) FROM unnest(%s::bytea[]) x",
                            (schema, [psycopg2.Binary(r) for r in chunk]))
                for rec, (res,) in zip(chunk, cur.fetchall()):
                    counts[(schema, res[:4])] = counts.get((schema, res[:4]), 0) + 1
                    if res.startswith("DIFF"):
                        diffs.append((schema, tz, rec[:300], res[:500]))
                    if schema == "public.r2" and res != "general":
                        diffs.append((schema, tz, rec[:300], "r2 must always decline: " + res))
                    if schema == "public.bench_row" and rec.startswith(b'{"') and b"\\" not in rec \
                            and b"e" not in rec.lower().replace(b"extra", b"").replace(b"nested", b"") \
                            and b"Id" not in rec and b"ID" not in rec:
                        wellformed += 1
                        wellformed_fast += res == "fast"
    for d in diffs[:20]:
        print("FAIL: %s TZ=%s %r -> %s" % d)
    print("outcomes: " + ", ".join("%s %s=%d" % (s, r, n) for (s, r), n in sorted(counts.items())))
    print("bench_row records without exponents or escapes decided fast: %d of %d" % (wellformed_fast, wellformed))
    ok = not diffs
    if wellformed and wellformed_fast < wellformed // 2:
        print("FAIL: the scanner declined most well-formed records")
        ok = False
    if counts.get(("public.r", "fast"), 0) < len(recs) // 4:
        print("FAIL: the scanner decided too few records of public.r")
        ok = False
    conn.close()
    ac.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    print("PASS" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
