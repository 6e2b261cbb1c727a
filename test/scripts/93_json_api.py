#!/usr/bin/env python3
"""JSON conveniences and clean errors.

1. data_to_text / data_to_jsonb over seeded random and hostile inputs (invalid
   UTF-8, NUL, deep nesting, huge numbers, \\u0000, lone surrogates, binary):
   never an error, and equal to the oracle: convert_from(data, 'UTF8') and
   convert_from(data, 'UTF8')::jsonb, evaluated per input under a savepoint
   (an error there means NULL).
2. Round trip: put_records_json / put_record_json / put_record (binary), read
   back with get_records_json: every record once, in order, bytes exact,
   data_text and data_json as the oracle says; an empty batch is one row
   with NULL record columns and the next iterator.
3. Privileges: get_records_json / put_records_json / put_record_json are refused
   exactly as the base functions are (no stream access; EXECUTE revoked on
   the base function).
4. Errors of the SQL API carry no CONTEXT lines from internal plpgsql.
5. Prints the read and put costs against the bytea functions.

    STREAM_JSON_SEED=7 STREAM_JSON_N=400 python3 test/scripts/93_json_api.py
"""
import json
import os
import random
import sys
import time

import psycopg2

SEED = int(os.environ.get("STREAM_JSON_SEED", "20261201"))
N = int(os.environ.get("STREAM_JSON_N", "400"))
DB = "stream_json_test"
ROLE = "stream_json_reader"
rnd = random.Random(SEED)
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def rand_str():
    alphabet = ["a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "é", "ß", "€", "😀", "中", "\u2028", "\x01"]
    return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12)))


def rand_json(depth=0):
    k = rnd.randint(0, 7 if depth < 4 else 4)
    if k == 0:
        return None
    if k == 1:
        return rnd.choice([True, False])
    if k == 2:
        return rnd.randint(-10**rnd.randint(1, 30), 10**rnd.randint(1, 30))
    if k == 3:
        return rnd.uniform(-1e6, 1e6)
    if k == 4:
        return rand_str()
    if k in (5, 6):
        return [rand_json(depth + 1) for _ in range(rnd.randint(0, 4))]
    return {rand_str(): rand_json(depth + 1) for _ in range(rnd.randint(0, 4))}


def hostile():
    cases = [
        b"", b" ", b"null", b"0", b"-0", b"1e5", b"\"\"", b"{}", b"[]", b"nul", b"{\"a\":}", b"[1,]",
        b"\xff", b"\xc3", b"\xc3\xa9", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\"a\x00b\"", b"\x00",
        b"\"\\u0000\"", b"\"\\ud800\"", b"\"\\udc00\"", b"\"\\ud83d\\ude00\"", b"\"\\u00e9\"", b"\"\\uZZZZ\"",
        b"\"\\\\u0000\"", b"1e99999", b"1e-99999", b"1e1000", b"1E+0100", b"9" * 5000, b"0." + b"1" * 2000,
        b"[" * 100 + b"]" * 100, b"[" * 129 + b"]" * 129, b"[" * 20000 + b"]" * 20000, b"[" * 20000,
        b"{\"a\":" * 3000 + b"1" + b"}" * 3000, b"\xef\xbb\xbf{}", b"NaN", b"Infinity", b"true false",
        b"{\"a\": 1, \"a\": 2}", b"\"\\/\"", b"\t\n{\"x\" : [ true , null ]}\r\n",
    ]
    for _ in range(N // 4):
        cases.append(bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 40))))
    for _ in range(N):
        doc = rand_json()
        cases.append(json.dumps(doc, ensure_ascii=rnd.random() < 0.5).encode("utf-8"))
    return cases


def oracle(cur, data):
    """(text or None, jsonb text or None) by PostgreSQL's own conversions."""
    out = []
    for expr in ("convert_from(%s, 'UTF8')", "convert_from(%s, 'UTF8')::jsonb::text"):
        cur.execute("SAVEPOINT o")
        try:
            cur.execute("SELECT " + expr, (psycopg2.Binary(data),))
            out.append(cur.fetchone()[0])
            cur.execute("RELEASE SAVEPOINT o")
        except psycopg2.Error:
            cur.execute("ROLLBACK TO SAVEPOINT o")
            out.append(None)
    return tuple(out)


def main():
    admin = psycopg2.connect("dbname=postgres")
    admin.autocommit = True
    ac = admin.cursor()
    ac.execute("SET client_min_messages = warning")
    ac.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    ac.execute(f"CREATE DATABASE {DB}")
    ac.execute(f"DROP ROLE IF EXISTS {ROLE}")
    ac.execute(f"CREATE ROLE {ROLE} LOGIN")
    conn = psycopg2.connect(f"dbname={DB}")
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("CREATE EXTENSION stream")
    cur.execute("SELECT stream.create_stream('j', 3)")

    # 1. conversions never fail and agree with the oracle
    cases = hostile()
    ocur = psycopg2.connect(f"dbname={DB}").cursor()
    checked = 0
    for data in cases:
        want_text, want_json = oracle(ocur, data)
        try:
            cur.execute("SELECT stream.data_to_text(%s), stream.data_to_jsonb(%s)::text",
                        (psycopg2.Binary(data), psycopg2.Binary(data)))
            got_text, got_json = cur.fetchone()
        except psycopg2.Error as e:
            fail(f"data_to_text/data_to_jsonb raised {e.pgcode} {e.pgerror!r} for {data[:60]!r} (len {len(data)})")
            continue
        if got_text != want_text:
            fail(f"data_to_text({data[:60]!r}) = {got_text!r:.80}, want {want_text!r:.80}")
        if got_json != want_json:
            fail(f"data_to_jsonb({data[:60]!r}) = {got_json!r:.80}, want {want_json!r:.80}")
        checked += 1
    print(f"conversions: {checked} inputs (seed {SEED}) agree with convert_from / ::jsonb")

    # 2. round trip through put_records_json / put_record_json / put_record and get_records_json
    written = {}      # shard -> [(seq, key, bytes)]
    docs = [rand_json() for _ in range(N)]
    for i in range(0, len(docs), 50):
        batch = [{"partition_key": f"k{rnd.randint(0, 10**6)}-{rand_str()[:3] or 'x'}", "data": d}
                 for d in docs[i:i + 50]]
        cur.execute("SELECT shard_id, sequence_number, error_code FROM stream.put_records_json('j', %s)",
                    (json.dumps(batch),))
        for rec, (shard, seq, err) in zip(batch, cur.fetchall()):
            if err is not None:
                fail(f"put_records_json error {err}")
            cur.execute("SELECT convert_to(%s::jsonb::text, 'UTF8')", (json.dumps(rec["data"]),))
            written.setdefault(shard, []).append((seq, rec["partition_key"], bytes(cur.fetchone()[0])))
    for data in cases[:N // 2]:
        cur.execute("SELECT shard_id, sequence_number FROM stream.put_record('j', 'bin', %s)", (psycopg2.Binary(data),))
        shard, seq = cur.fetchone()
        written.setdefault(shard, []).append((seq, "bin", data))
    cur.execute("SELECT shard_id, sequence_number FROM stream.put_record_json('j', 'one', %s)",
                (json.dumps({"x": [1, "é"]}),))
    shard, seq = cur.fetchone()
    written.setdefault(shard, []).append((seq, "one", '{"x": [1, "é"]}'.encode()))

    total = 0
    for shard, recs in sorted(written.items()):
        recs.sort()
        cur.execute("SELECT stream.get_shard_iterator('j', %s, 'TRIM_HORIZON')", (shard,))
        it = cur.fetchone()[0]
        got = []
        while True:
            cur.execute("SELECT sequence_number, approximate_arrival_timestamp, partition_key, data, data_text,"
                        "       data_json::text, next_shard_iterator, millis_behind_latest"
                        "  FROM stream.get_records_json(%s, %s)", (it, rnd.randint(1, 97)))
            rows = cur.fetchall()
            if not rows:
                fail("get_records_json returned no row at all")
                break
            if rows[0][0] is None:
                if len(rows) != 1 or any(v is not None for v in rows[0][:6]) or rows[0][6] is None:
                    fail(f"empty batch is not one row of NULL record columns with an iterator: {rows}")
                break
            if len({(r[6], r[7]) for r in rows}) != 1:
                fail("rows of one batch carry different next_shard_iterator / millis_behind_latest")
            got.extend(rows)
            it = rows[-1][6]
        if [(r[0], r[2], bytes(r[3])) for r in got] != recs:
            fail(f"{shard}: read back {len(got)} records, wrote {len(recs)}, or they differ")
            continue
        for r in got:
            want_text, want_json = oracle(ocur, bytes(r[3]))
            if r[4] != want_text or r[5] != want_json:
                fail(f"{shard} {r[0]}: data_text/data_json {r[4]!r:.60}/{r[5]!r:.60}, want {want_text!r:.60}/{want_json!r:.60}")
        total += len(got)
    print(f"round trip: {total} records read back exactly through get_records_json")

    # 3. privileges: the base functions' checks apply
    cur.execute("SELECT stream.get_shard_iterator('j', 'shardId-000000000000', 'TRIM_HORIZON')")
    it = cur.fetchone()[0]
    rconn = psycopg2.connect(f"dbname={DB} user={ROLE}")
    rconn.autocommit = True
    rc = rconn.cursor()

    def expect(sql, args, code, what):
        try:
            rc.execute(sql, args)
            rc.fetchall()
            fail(f"{what}: succeeded, want SQLSTATE {code}")
        except psycopg2.Error as e:
            if e.pgcode != code:
                fail(f"{what}: SQLSTATE {e.pgcode} {e.pgerror!r}, want {code}")

    expect("SELECT * FROM stream.get_records_json(%s)", (it,), "42501", "get_records_json without read access")
    expect("SELECT * FROM stream.put_records_json('j', '[{\"partition_key\": \"a\", \"data\": 1}]')", None,
           "42501", "put_records_json without write access")
    expect("SELECT * FROM stream.put_record_json('j', 'a', '1')", None, "42501", "put_record_json without write access")
    cur.execute(f"SELECT stream.grant_stream_access('j', '{ROLE}', 'read_write')")
    rc.execute("SELECT count(*) FROM stream.get_records_json(%s)", (it,))
    rc.execute("SELECT * FROM stream.put_records_json('j', '[{\"partition_key\": \"a\", \"data\": 1}]')")
    cur.execute("REVOKE EXECUTE ON FUNCTION stream.get_records(text, int) FROM PUBLIC")
    cur.execute("REVOKE EXECUTE ON FUNCTION stream.put_records(text, text[], bytea[], text[]) FROM PUBLIC")
    cur.execute("REVOKE EXECUTE ON FUNCTION stream.put_record(text, text, bytea, text, text) FROM PUBLIC")
    expect("SELECT * FROM stream.get_records_json(%s)", (it,), "42501", "get_records_json with EXECUTE on get_records revoked")
    expect("SELECT * FROM stream.put_records_json('j', '[{\"partition_key\": \"a\", \"data\": 1}]')", None,
           "42501", "put_records_json with EXECUTE on put_records revoked")
    expect("SELECT * FROM stream.put_record_json('j', 'a', '1')", None, "42501",
           "put_record_json with EXECUTE on put_record revoked")
    cur.execute("GRANT EXECUTE ON FUNCTION stream.get_records(text, int), "
                "stream.put_records(text, text[], bytea[], text[]), stream.put_record(text, text, bytea, text, text) TO PUBLIC")
    rconn.close()
    print("privileges: JSON functions refused exactly where the base functions are")

    # 4. no CONTEXT lines on the API's errors
    cur.execute("SELECT stream.register_application('app', 'j')")
    calls = [
        "SELECT stream.describe_stream('nope')", "SELECT stream.describe_stream('bad name')",
        "SELECT stream.create_stream('x', 0)", "SELECT stream.create_stream('j', 1)",
        "SELECT * FROM stream.list_shards('nope')", "SELECT stream.increase_stream_retention_period('j', 1)",
        "SELECT stream.decrease_stream_retention_period('nope', 48)",
        "SELECT stream.register_application('a2', 'nope')", "SELECT * FROM stream.acquire_leases('nope', 'w')",
        "SELECT stream.checkpoint('app', 'w', 'shardId-000000000000', '1')",
        "SELECT stream.get_lease_iterator('app', 'w', 'shardId-000000000000')",
        "SELECT stream.register_stream_consumer('j', 'bad name')",
        "SELECT stream.describe_stream_consumer('j', 'nope')",
        "SELECT stream.create_delivery_stream('d')", "SELECT stream.describe_delivery_stream('nope')",
        "SELECT * FROM stream.get_records_json('junk')", "SELECT * FROM stream.put_records_json('nope', '[]')",
        "SELECT * FROM stream.put_records_json('j', '[{\"partition_key\": \"a\"}]')",
        "SELECT * FROM stream.put_record_json('nope', 'k', '{}')",
        f"SELECT stream.grant_stream_access('nope', '{ROLE}')",
    ]
    for sql in calls:
        try:
            cur.execute(sql)
            fail(f"{sql}: no error")
        except psycopg2.Error as e:
            if e.diag.context:
                fail(f"{sql}: error {e.diag.message_primary!r} carries CONTEXT {e.diag.context!r}")
    print(f"errors: {len(calls)} failing calls, checked for CONTEXT lines")

    # 5. costs (printed, not asserted: the machine is shared)
    cur.execute("SELECT stream.create_stream('perf', 1)")
    payload = json.dumps({"user": 12345, "page": "/products/abc", "ts": "2026-12-01T20:00:00Z", "n": [1, 2, 3]})
    for _ in range(20):
        cur.execute("SELECT count(*) FROM stream.put_records_json('perf', %s)",
                    (json.dumps([{"partition_key": "p", "data": json.loads(payload)}] * 500),))
    cur.execute("SELECT stream.get_shard_iterator('perf', 'shardId-000000000000', 'TRIM_HORIZON')")
    it = cur.fetchone()[0]

    def best(sql, args, n=5):
        t = []
        for _ in range(n):
            t0 = time.perf_counter()
            cur.execute(sql, args)
            cur.fetchall()
            t.append(time.perf_counter() - t0)
        return min(t) * 1000

    base = best("SELECT r.sequence_number, r.data FROM stream.get_records(%s, 10000) g, unnest(g.records) r", (it,))
    conv = best("SELECT r.sequence_number, r.data, convert_from(r.data, 'UTF8'), convert_from(r.data, 'UTF8')::jsonb"
                "  FROM stream.get_records(%s, 10000) g, unnest(g.records) r", (it,))
    js = best("SELECT * FROM stream.get_records_json(%s, 10000)", (it,))
    print(f"read 10000 records of {len(payload)} B JSON, best of 5 incl. psycopg2: get_records+unnest {base:.1f} ms, "
          f"+convert_from+::jsonb {conv:.1f} ms, get_records_json {js:.1f} ms")
    sql_put = "SELECT * FROM stream.put_record('perf', 'p', convert_to(%s, 'UTF8'))"
    t0 = time.perf_counter()
    for _ in range(300):
        cur.execute(sql_put, (payload,))
    t_put = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(300):
        cur.execute("SELECT * FROM stream.put_record_json('perf', 'p', %s)", (payload,))
    t_json = time.perf_counter() - t0
    print(f"300 autocommit puts: put_record {t_put * 1000:.0f} ms, put_record_json {t_json * 1000:.0f} ms")

    conn.close()
    ocur.connection.close()
    ac.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    ac.execute(f"DROP ROLE IF EXISTS {ROLE}")
    if failures:
        print(f"{len(failures)} failures")
        sys.exit(1)
    print("PASS")


if __name__ == "__main__":
    main()
