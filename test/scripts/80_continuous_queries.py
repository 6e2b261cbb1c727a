#!/usr/bin/python3
"""Continuous queries (issue 13) against references computed by plain SQL.

Seeded random records (keys with NULLs and multibyte text, NULL values,
numerics, a few records that do not decode) go to random shards of a
3-shard stream in random order; every record's event time is within the
watermark lag of the records before it, so none is late.  For tumbling,
hopping and session windows on event time, each with batch sizes 1, 7 and
500, the destination must equal, row for row and with no duplicates, a
reference over the same records: date_bin GROUP BY (tumble), the windows
of generate_series (hop), gaps and islands (session).  A sentinel record
per shard, far ahead, moves the watermark past every window.  A tumbling
window on arrival time is checked against date_bin over the stored
arrival times, its last windows closed by the idle timeout.

Late records: on one shard, records out of order beyond the lag; with
batch sizes 1 and 500 the late count is exactly the records below the
highest earlier time minus the lag, and the output is the reference over
the others.

Refused at creation: aggregates without a combine function (array_agg,
string_agg), DISTINCT and ordered-set aggregates, subqueries, ORDER BY, a
GROUP BY without the window columns, unknown time columns.  Privileges: a
role without read access to the stream cannot create a query over it; the
owner's query runs as the owner (its WHERE sees current_user); an owner
that loses read access stops getting output; _cq_batch() is empty in any
other session.
"""
import json
import os
import random
import sys
import time
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
import streamtest as st  # noqa: E402
from streamtest import check, q, q1  # noqa: E402
from streamtest import log as say  # noqa: E402
import cqref  # noqa: E402
from cqref import compare, put_all, query_sql, rows_of, wait_watermark  # noqa: E402

DB = 'stream_cq_test'
ROLES = ('cq_owner', 'cq_stranger')
st.configure(DB, statement_timeout='300s', client_min_messages='warning')
SEED = int(os.environ.get('STREAM_TEST_SEED', random.randrange(1 << 30)))
rng = random.Random(SEED)
BASE = datetime(2026, 1, 1, 10, 0, 0, tzinfo=timezone.utc)
LAG = 10
N = int(os.environ.get('STREAM_CQ_RECORDS', 1500))
KEYS = ['AMZN', 'MSFT', 'ÄÖÜ-ключ', 'x' * 40, None] + [f'k{i}' for i in range(25)]
def iso(t):
    return t.isoformat()


def gen_records():
    """(shard, json text or bad bytes, decoded tuple or None) in put order."""
    out = []
    t = BASE
    for i in range(N):
        t += timedelta(milliseconds=rng.randint(0, 900))
        ts = t - timedelta(milliseconds=rng.randint(0, LAG * 1000 - 1001))   # within the lag
        if rng.random() < 0.6:
            ts = ts.replace(microsecond=0)      # whole seconds: records on window edges, session gaps of exactly 20 s
        k = rng.choice(KEYS)
        v = None if rng.random() < 0.1 else round(rng.uniform(-100, 100), rng.randint(0, 4))
        qq = rng.randint(0, 100)
        shard = rng.randrange(3)
        if rng.random() < 0.01:
            out.append((shard, rng.choice(['not json', '{"k": "a", "v": "abc", "q": 1, "ts": "' + iso(ts) + '"}',
                                           '{"k": "a", "q": 1}', '[1, 2]']), None))
            continue
        out.append((shard, json.dumps({'k': k, 'v': v, 'q': qq, 'ts': iso(ts), 'extra': 'x' * rng.choice([0, 10, 2000])}),
                    (k, v, qq, ts)))
    return out


WINDOWS = {k: (cqref.window_fn(k, 'cq'), k) for k in ('tumble', 'hop', 'session')}


def test_windows(conn):
    hash_keys = cqref.hash_keys(conn, 'cq')
    names = []
    for kind, (fn, _) in WINDOWS.items():
        for bs in (1, 7, 500):
            name = f'{kind}_{bs}'
            q(conn, 'SELECT stream.create_continuous_query(%s, %s, %s, batch_size => %s)',
              (name, query_sql(fn), f'public.out_{name}', bs))
            names.append(name)
    recs = gen_records()
    cqref.load_reference_table(conn, 'ref', [r[2] for r in recs if r[2] is not None])
    put_all(conn, 'cq', recs, hash_keys)
    # a sentinel per shard, far ahead: the watermark passes every window
    sentinel = BASE + timedelta(days=1)
    put_all(conn, 'cq', cqref.sentinels(3, sentinel), hash_keys)
    bad = sum(1 for r in recs if r[2] is None)
    say(f'{len(recs)} records ({bad} that do not decode) on 3 shards; {len(names)} queries')
    wait_watermark(conn, names, sentinel - timedelta(seconds=LAG))
    for kind, (_, ref) in WINDOWS.items():
        for bs in (1, 7, 500):
            name = f'{kind}_{bs}'
            n = compare(conn, f'{name}', f'public.out_{name}', cqref.reference(ref, 'ref'))
            fin, late, failed = q(conn, 'SELECT records_in, records_late, records_failed FROM stream.continuous_query_status '
                                        'WHERE query_name = %s', (name,))[0]
            check(late == 0 and failed == bad and fin == len(recs) - bad + 3,
                  f'{name}: in {fin}, late {late}, failed {failed} (expected {len(recs) - bad + 3}, 0, {bad})')
            errs = q1(conn, "SELECT count(*) FROM stream.processor_errors e JOIN stream.continuous_queries c "
                            "USING (processor_id) WHERE c.query_name = %s AND e.error_type = 'RecordDecodeError'", (name,))
            check(errs == bad, f'{name}: {errs} decode errors recorded, {bad} expected')
            say(f'{name}: {n} rows equal the reference')
    d = q1(conn, "SELECT stream.describe_continuous_query('tumble_7')")
    check(d['OpenWindowGroups'] == 1 and d['Status'] == 'RUNNING', f'describe: {d}')


def test_arrival(conn):
    q(conn, "SELECT stream.create_stream('arr', 2)")
    q(conn, 'SELECT stream.create_continuous_query(%s, %s, %s, batch_size => 50, idle_timeout => %s)',
      ('arrival', "SELECT k, window_start, window_end, count(*) AS n, sum(v) AS s, avg(v) AS a "
                  "FROM stream.tumble('arr', size => '200 milliseconds') AS t(k text, v numeric) "
                  "GROUP BY k, window_start, window_end", 'public.out_arrival', '1 second'))
    total = 0
    for _ in range(15):
        n = rng.randint(1, 60)
        q(conn, "SELECT count(*) FROM stream.put_records('arr', %s, %s::bytea[])",
          ([f'p{rng.randrange(50)}' for _ in range(n)],
           [json.dumps({'k': rng.choice('abc'), 'v': rng.randint(-5, 5)}).encode() for _ in range(n)]))
        total += n
        time.sleep(rng.uniform(0, 0.3))
    st.wait_for(lambda: q1(conn, "SELECT count(*) FROM stream_cq.cq_{}_state".format(
        q1(conn, "SELECT processor_id FROM stream.continuous_queries WHERE query_name = 'arrival'"))) == 0
        and q1(conn, "SELECT records_in FROM stream.continuous_queries WHERE query_name = 'arrival'") == total,
        60, 'every arrival-time window emitted')
    tbl = q1(conn, "SELECT stream_internal._data_table(stream_id)::text FROM stream.streams WHERE stream_name = 'arr'")
    got = rows_of(conn, 'SELECT k, window_start, window_end, n, s, a FROM public.out_arrival')
    want = rows_of(conn, "SELECT j->>'k', date_bin('200 milliseconds', arrival, 'epoch'), "
                         "date_bin('200 milliseconds', arrival, 'epoch') + interval '200 milliseconds', count(*), "
                         "sum((j->>'v')::numeric), avg((j->>'v')::numeric) "
                         f"FROM (SELECT arrival, convert_from(data, 'UTF8')::jsonb AS j FROM {tbl}) r GROUP BY 1, 2, 3")
    check(got == want, f'arrival time: {len(got)} rows, reference {len(want)}')
    late = q1(conn, "SELECT records_late FROM stream.continuous_queries WHERE query_name = 'arrival'")
    check(late == 0, f'arrival time: {late} late records')
    say(f'arrival time: {total} records, {len(got)} rows equal the reference')


def test_late(conn):
    q(conn, "SELECT stream.create_stream('late', 1)")
    recs = []
    t = BASE
    for i in range(600):
        t += timedelta(milliseconds=rng.randint(0, 2000))
        back = rng.randint(0, 5000) if rng.random() < 0.8 else rng.randint(5000, 120000)
        ts = t - timedelta(milliseconds=back)
        recs.append((0, json.dumps({'k': rng.choice('ab'), 'v': rng.randint(0, 9), 'q': 1, 'ts': iso(ts)}),
                     (rng.choice('ab'), None, 1, ts)))
    # the decoded tuple must be the record's: rebuild it from the JSON
    recs = [(s, j, (json.loads(j)['k'], json.loads(j)['v'], 1, datetime.fromisoformat(json.loads(j)['ts'])))
            for s, j, _ in recs]
    late_ref = []
    mx = None
    for s, j, r in recs:
        late_ref.append(mx is not None and r[3] < mx - timedelta(seconds=5))
        mx = r[3] if mx is None else max(mx, r[3])
    cqref.load_reference_table(conn, 'ref_late', [r[2] for r, lt in zip(recs, late_ref) if not lt])
    for bs in (1, 500):
        q(conn, 'SELECT stream.create_continuous_query(%s, %s, %s, batch_size => %s, late_destination => %s)',
          (f'late_{bs}', query_sql("stream.tumble('late', size => '1 minute', time_column => 'ts', "
                                   "watermark_lag => '5 seconds')", 'true'), f'public.out_late_{bs}', bs,
           f'public.late_side_{bs}'))
    put_all(conn, 'late', recs + cqref.sentinels(1, BASE + timedelta(days=1)), ['0'])
    wait_watermark(conn, ['late_1', 'late_500'], BASE + timedelta(days=1) - timedelta(seconds=5))
    for bs in (1, 500):
        late = q1(conn, 'SELECT records_late FROM stream.continuous_queries WHERE query_name = %s', (f'late_{bs}',))
        check(late == sum(late_ref), f'late_{bs}: {late} late records, {sum(late_ref)} below the watermark')
        side = q(conn, f'SELECT record_time, watermark, data FROM public.late_side_{bs} ORDER BY sequence_number::numeric')
        want = [r[2][3] for r, lt in zip(recs, late_ref) if lt]
        check([x[0] for x in side] == want, f'late_{bs}: the side output holds {len(side)} records, {len(want)} late ones')
        check(all(t < w and datetime.fromisoformat(d['ts']) == t for t, w, d in side),
              f'late_{bs}: each side-output record below its watermark, with its data')
        compare(conn, f'late_{bs}', f'public.out_late_{bs}', cqref.reference('tumble', 'ref_late', 'true'))
    say(f'late: {sum(late_ref)} of {len(recs)} records late, as the reference says')


REFUSED = [
    ("SELECT window_start, window_end, array_agg(v) FROM stream.tumble('cq', size => '1 minute') AS t(v int) "
     "GROUP BY window_start, window_end", 'aggregate array_agg(anynonarray) cannot be computed incrementally', 'hll'),
    ("SELECT window_start, window_end, string_agg(v, ',') FROM stream.tumble('cq', size => '1 minute') AS t(v text) "
     "GROUP BY window_start, window_end", 'cannot be computed incrementally', 'tdigest'),
    ("SELECT window_start, window_end, count(DISTINCT v) FROM stream.tumble('cq', size => '1 minute') AS t(v int) "
     "GROUP BY window_start, window_end", 'DISTINCT', None),
    ("SELECT window_start, window_end, percentile_cont(0.5) WITHIN GROUP (ORDER BY v) FROM "
     "stream.tumble('cq', size => '1 minute') AS t(v int) GROUP BY window_start, window_end", 'cannot be computed', None),
    ("SELECT window_start, window_end, count(*) FROM stream.tumble('cq', size => '1 minute') AS t(v int) "
     "WHERE v IN (SELECT 1) GROUP BY window_start, window_end", 'subqueries', None),
    ("SELECT window_start, window_end, count(*) FROM stream.tumble('cq', size => '1 minute') AS t(v int) "
     "GROUP BY window_start, window_end ORDER BY 1", 'ORDER BY', None),
    ("SELECT v, count(*) FROM stream.tumble('cq', size => '1 minute') AS t(v int) GROUP BY v",
     'groups by window_start and window_end', None),
    ("SELECT window_start, window_end, count(*) FROM stream.tumble('cq', size => '1 minute') "
     "GROUP BY window_start, window_end", 'column definition list', None),
    ("SELECT window_start, window_end, count(*) FROM stream.tumble('cq', size => '1 minute', time_column => 'nope') "
     "AS t(v int) GROUP BY window_start, window_end", 'not a declared column', None),
    ("SELECT window_start, window_end, count(*) FROM stream.tumble('cq', size => '1 month') AS t(v int) "
     "GROUP BY window_start, window_end", 'months', None),
    ("SELECT window_start, window_end, count(*) FROM public.ref GROUP BY 1, 2", 'exactly one window function', None),
]


def test_refused(conn):
    for i, (sql, text, hint) in enumerate(REFUSED):
        try:
            q(conn, 'SELECT stream.create_continuous_query(%s, %s, %s)', (f'bad_{i}', sql, f'public.bad_{i}'))
            check(False, f'refused #{i}: accepted: {sql}')
        except Exception as e:  # noqa: BLE001
            msg = str(e)
            check(text in msg, f'refused #{i}: {msg!r} does not say {text!r}')
            if hint:
                check(hint in msg, f'refused #{i}: no hint {hint!r} in {msg!r}')
    check(q1(conn, "SELECT count(*) FROM stream.continuous_queries WHERE query_name LIKE 'bad_%'") == 0,
          'nothing refused was created')
    check(q1(conn, "SELECT count(*) FROM pg_class WHERE relname LIKE 'bad_%'") == 0, 'no destination left behind')
    say(f'{len(REFUSED)} queries refused with their reasons')


def test_privileges(conn):
    q(conn, "SELECT stream.create_stream('priv', 1)")
    q(conn, 'GRANT CREATE ON SCHEMA public TO cq_owner, cq_stranger')
    q(conn, "SELECT stream.grant_stream_access('priv', 'cq_owner', 'read')")
    sql = ("SELECT window_start, window_end, count(*) AS n FROM stream.tumble('priv', size => '1 minute', "
           "time_column => 'ts') AS t(ts timestamptz) WHERE current_user = 'cq_owner' GROUP BY window_start, window_end")
    stranger = st.connect(user='cq_stranger')
    st.expect_error_mentioning(stranger, 'SELECT stream.create_continuous_query(%s, %s, %s)',
                               ('steal', sql, 'public.stolen'), 'AccessDeniedException', 'a stranger reads no stream')
    check(q1(conn, "SELECT to_regclass('public.stolen')") is None, 'no table for the stranger')
    owner = st.connect(user='cq_owner')
    q(owner, 'SELECT stream.create_continuous_query(%s, %s, %s)', ('mine', sql, 'public.mine'))
    check(q1(stranger, "SELECT count(*) FROM stream.continuous_query_status") == 0, 'a stranger sees no status')
    st.expect_error_mentioning(stranger, "SELECT stream.stop_continuous_query('mine')", None,
                               'ResourceNotFoundException', 'a stranger cannot stop it')
    put_all(conn, 'priv', [(0, json.dumps({'ts': iso(BASE + timedelta(minutes=m))})) for m in (0, 1, 5)], ['0'])
    st.wait_for(lambda: q1(owner, 'SELECT count(*) FROM public.mine') == 2, 60, 'the owner\'s windows')
    check(q1(owner, 'SELECT sum(n) FROM public.mine') == 2, 'the query ran as its owner (current_user)')
    check(q(owner, 'SELECT * FROM stream_internal._cq_batch() AS t(ts timestamptz, a timestamptz, b timestamptz)') == [],
          '_cq_batch is empty outside the worker')
    # read access revoked: the query stops with the reason
    q(conn, "SELECT stream.revoke_stream_access('priv', 'cq_owner')")
    put_all(conn, 'priv', [(0, json.dumps({'ts': iso(BASE + timedelta(minutes=9))}))], ['0'])
    st.wait_for(lambda: 'AccessDeniedException' in (q1(owner, "SELECT coalesce(last_error, '') FROM "
                                                             "stream.continuous_query_status") or ''), 30,
                'the revoked owner\'s query fails')
    check(q1(owner, 'SELECT count(*) FROM public.mine') == 2, 'nothing more after the revoke')
    q(owner, "SELECT stream.stop_continuous_query('mine')")
    q(owner, "SELECT stream.delete_continuous_query('mine')")
    check(q1(conn, "SELECT count(*) FROM stream.continuous_queries WHERE query_name = 'mine'") == 0, 'deleted')
    for c in (owner, stranger):
        c.close()
    say('privileges: strangers refused, the owner\'s code runs as the owner, a revoke stops it')


def test_destinations(conn):
    """A stream and a direct-put delivery stream as destinations: each window once, as a JSON record."""
    q(conn, "SELECT stream.create_stream('dsrc', 2)")
    q(conn, "SELECT stream.create_stream('dout', 2)")
    q(conn, "CREATE TABLE public.fh_rows (k text, window_start timestamptz, window_end timestamptz, n bigint, s numeric)")
    q(conn, "SELECT stream.create_delivery_stream('fh', destination_table => 'public.fh_rows', buffer_interval_seconds => 0)")
    sql = ("SELECT k, window_start, window_end, count(*) AS n, sum(v) AS s FROM stream.tumble('dsrc', size => '1 minute', "
           f"time_column => 'ts', watermark_lag => '10 seconds') AS t({cqref.COLS}) GROUP BY k, window_start, window_end")
    q(conn, 'SELECT stream.create_continuous_query(%s, %s, %s, batch_size => 7)', ('to_stream', sql, 'stream:dout'))
    q(conn, 'SELECT stream.create_continuous_query(%s, %s, %s, batch_size => 7)', ('to_fh', sql, 'delivery_stream:fh'))
    keys = cqref.hash_keys(conn, 'dsrc')
    recs, t = [], BASE
    for _ in range(700):
        t += timedelta(milliseconds=rng.randint(0, 600))
        ts = t - timedelta(milliseconds=rng.randint(0, 9999))
        row = (rng.choice(['a', 'b', None, 'ключ']), rng.randint(-50, 50), 0, ts)
        recs.append((rng.randrange(2), json.dumps({'k': row[0], 'v': row[1], 'q': 0, 'ts': iso(ts)}), row))
    cqref.load_reference_table(conn, 'ref_dest', [r[2] for r in recs])
    put_all(conn, 'dsrc', recs + cqref.sentinels(2, BASE + timedelta(days=1)), keys)
    wait_watermark(conn, ['to_stream', 'to_fh'], BASE + timedelta(days=1) - timedelta(seconds=10))
    ref = ("SELECT k, date_bin('1 minute', ts, 'epoch') AS ws, date_bin('1 minute', ts, 'epoch') + interval '1 minute', "
           "count(*), sum(v) FROM ref_dest GROUP BY 1, 2")
    want = rows_of(conn, ref)
    got = rows_of(conn, "SELECT j->>'k', (j->>'window_start')::timestamptz, (j->>'window_end')::timestamptz, "
                        "(j->>'n')::bigint, (j->>'s')::numeric FROM (SELECT convert_from(data, 'UTF8')::jsonb AS j "
                        "FROM stream.read_shard('dout', 'shardId-000000000000') UNION ALL "
                        "SELECT convert_from(data, 'UTF8')::jsonb FROM stream.read_shard('dout', 'shardId-000000000001')) x")
    check(got == want, f'stream destination: {len(got)} records, reference {len(want)} rows')
    check(q1(conn, "SELECT stream.flush_delivery_stream('fh', 60)") is True, 'flushed')
    got = rows_of(conn, 'SELECT k, window_start, window_end, n, s FROM public.fh_rows')
    check(got == want, f'delivery stream destination: {len(got)} rows, reference {len(want)}')
    stranger = st.connect(user='cq_stranger')
    q(conn, "SELECT stream.grant_stream_access('dsrc', 'cq_stranger', 'read')")
    st.expect_error_mentioning(stranger, 'SELECT stream.create_continuous_query(%s, %s, %s)',
                               ('intrude', sql, 'stream:dout'), 'AccessDeniedException', 'no write access to the destination')
    st.expect_error_mentioning(conn, 'SELECT stream.create_continuous_query(%s, %s, %s)',
                               ('loop', sql, 'stream:dsrc'), 'own source stream', 'a query cannot feed its source')
    stranger.close()
    say(f'destinations: {len(want)} windows into a stream and a delivery stream, each once')


def test_inflight(conn):
    """Arrival time: the watermark follows the clock over idle shards (no idle timeout: it is an hour here)
    but never passes a producer in flight; its record, committed later, is not late."""
    q(conn, "SELECT stream.create_stream('inf', 2)")
    keys = cqref.hash_keys(conn, 'inf')
    q(conn, 'SELECT stream.create_continuous_query(%s, %s, %s, batch_size => 7, idle_timeout => %s)',
      ('inflight', "SELECT k, window_start, window_end, count(*) AS n FROM stream.tumble('inf', size => '100 milliseconds') "
                   "AS t(k text) GROUP BY k, window_start, window_end", 'public.out_inflight', '1 hour'))
    pid = q1(conn, "SELECT processor_id FROM stream.continuous_queries WHERE query_name = 'inflight'")
    state_empty = lambda: q1(conn, f'SELECT count(*) FROM stream_cq.cq_{pid}_state') == 0  # noqa: E731
    put_all(conn, 'inf', [(rng.randrange(2), json.dumps({'k': 'before'})) for _ in range(30)], keys)
    st.wait_for(lambda: q1(conn, "SELECT records_in FROM stream.continuous_queries WHERE query_name = 'inflight'") == 30
                and state_empty(), 30, 'windows closed over idle shards without an idle timeout')
    holder = st.connect()
    q(holder, 'BEGIN')
    began = q1(holder, 'SELECT now()')
    q(holder, "SELECT stream.put_record('inf', 'h', convert_to('{\"k\": \"held\"}', 'UTF8'), %s)", (keys[0],))
    for _ in range(10):
        put_all(conn, 'inf', [(rng.randrange(2), json.dumps({'k': 'during'})) for _ in range(5)], keys)
        time.sleep(0.1)
    time.sleep(0.5)
    wm = q1(conn, "SELECT watermark FROM stream.continuous_queries WHERE query_name = 'inflight'")
    emitted_before = q1(conn, 'SELECT count(*) FROM public.out_inflight')
    q(holder, 'COMMIT')
    holder.close()
    # the invariant is about the held record's arrival (stamped when its number was reserved, which may be after
    # the watermark was last moved over an idle shard: a little after its transaction began), not about the BEGIN
    tbl0 = q1(conn, "SELECT stream_internal._data_table(stream_id)::text FROM stream.streams WHERE stream_name = 'inf'")
    held_arrival = q1(conn, f"SELECT arrival FROM {tbl0} WHERE convert_from(data, 'UTF8')::jsonb->>'k' = 'held'")
    check(wm is not None and held_arrival is not None and wm <= held_arrival,
          f'the watermark {wm} passed the record in flight (arrival {held_arrival}, its transaction since {began})')
    st.wait_for(lambda: q1(conn, "SELECT records_in FROM stream.continuous_queries WHERE query_name = 'inflight'") == 81
                and state_empty(), 30, 'every window closed after the commit')
    late = q1(conn, "SELECT records_late FROM stream.continuous_queries WHERE query_name = 'inflight'")
    check(late == 0, f'{late} late records: the held one must not be')
    tbl = q1(conn, "SELECT stream_internal._data_table(stream_id)::text FROM stream.streams WHERE stream_name = 'inf'")
    want = rows_of(conn, "SELECT j->>'k', date_bin('100 milliseconds', arrival, 'epoch'), "
                         "date_bin('100 milliseconds', arrival, 'epoch') + interval '100 milliseconds', count(*) "
                         f"FROM (SELECT arrival, convert_from(data, 'UTF8')::jsonb AS j FROM {tbl}) r GROUP BY 1, 2, 3")
    got = rows_of(conn, 'SELECT k, window_start, window_end, n FROM public.out_inflight')
    check(got == want, f'in flight: {len(got)} rows, reference {len(want)}')
    say(f'in flight: watermark held at {wm} (producer since {began}), {emitted_before} rows before its commit, '
        f'{len(got)} rows equal the reference')


def open_shards(conn, stream):
    """(shard id, starting hash key, ending hash key) of the open shards."""
    return q(conn, "SELECT stream_internal._shard_id(sh.shard_index), sh.starting_hash_key, sh.ending_hash_key "
                   "FROM stream.shards sh JOIN stream.streams s USING (stream_id) "
                   "WHERE s.stream_name = %s AND sh.ending_seq IS NULL ORDER BY sh.starting_hash_key", (stream,))


def test_resharding(conn):
    """A split and a merge while queries run: parents before children, output equal to the reference."""
    q(conn, "SELECT stream.create_stream('rs', 2)")
    names = []
    for kind in ('tumble', 'session'):
        for bs in (7, 500):
            names.append(f'rs_{kind}_{bs}')
            q(conn, 'SELECT stream.create_continuous_query(%s, %s, %s, batch_size => %s)',
              (names[-1], query_sql(cqref.window_fn(kind, 'rs')), f'public.out_{names[-1]}', bs))
    t = BASE
    rows = []

    def put_phase(n):
        nonlocal t
        shards = open_shards(conn, 'rs')
        recs = []
        for _ in range(n):
            t += timedelta(milliseconds=rng.randint(0, 500))
            ts = t - timedelta(milliseconds=rng.randint(0, 9999))
            row = (rng.choice(['a', 'b', 'c', None]), rng.randint(-9, 9), rng.randint(0, 100), ts)
            recs.append((rng.randrange(len(shards)), json.dumps({'k': row[0], 'v': row[1], 'q': row[2], 'ts': iso(ts)}), row))
        put_all(conn, 'rs', recs, [str(int(sh[1])) for sh in shards])
        rows.extend(r[2] for r in recs)

    put_phase(rng.randint(200, 600))
    sh = open_shards(conn, 'rs')[0]
    q(conn, 'SELECT stream.split_shard(%s, %s, %s)', ('rs', sh[0], str((int(sh[1]) + int(sh[2])) // 2)))
    put_phase(rng.randint(200, 600))
    shards = open_shards(conn, 'rs')
    q(conn, 'SELECT stream.merge_shards(%s, %s, %s)', ('rs', shards[1][0], shards[2][0]))
    put_phase(rng.randint(200, 600))
    shards = open_shards(conn, 'rs')
    end = BASE + timedelta(days=1)
    put_all(conn, 'rs', cqref.sentinels(len(shards), end), [str(int(x[1])) for x in shards])
    cqref.load_reference_table(conn, 'ref_rs', rows)
    wait_watermark(conn, names, end - timedelta(seconds=LAG))
    for nm in names:
        kind = nm.split('_')[1]
        n = compare(conn, nm, f'public.out_{nm}', cqref.reference(kind, 'ref_rs'))
        late = q1(conn, 'SELECT records_late FROM stream.continuous_queries WHERE query_name = %s', (nm,))
        check(late == 0, f'{nm}: {late} late records across the split and merge')
        say(f'{nm}: {n} rows equal the reference across a split and a merge')


def main():
    say(f'seed {SEED}')
    conn = st.create_db(roles=ROLES, extension=True)
    for r in ROLES:
        q(conn, f'CREATE ROLE {r} LOGIN')
    q(conn, "SELECT stream.create_stream('cq', 3)")
    st.run_subtests([
        ('refused', test_refused, (conn,)),
        ('privileges', test_privileges, (conn,)),
        ('windows', test_windows, (conn,)),
        ('late', test_late, (conn,)),
        ('arrival', test_arrival, (conn,)),
        ('destinations', test_destinations, (conn,)),
        ('resharding', test_resharding, (conn,)),
        ('inflight', test_inflight, (conn,)),
    ])
    conn.close()


st.main_wrapper(main, lambda: st.drop_db(roles=ROLES, on_error=st.warn))
