"""Continuous queries (issue 13): the queries under test and their plain-SQL
references, shared by test/scripts/80_continuous_queries.py, the crash loop
test/t/continuous_query_crash.py and bench/continuous_query.py.

Records are JSON objects {"k", "v", "q", "ts"}; the reference table has the
same columns (k text, v numeric, q int, ts timestamptz).  Every query's
output columns are OUT, so a destination and a reference compare as
multisets of rows.
"""
import json
from datetime import timedelta

from streamtest import check, q, q1  # noqa: E402
from streamtest import log as say  # noqa: E402

COLS = 'k text, v numeric, q int, ts timestamptz'
AGGS = ('count(*) AS n, count(v) AS nv, sum(v) AS s, min(v) AS lo, max(v) AS hi, avg(v) AS a, '
        'sum(q) AS sq, max(k) AS mk, bool_or(q > 90) AS big')
OUT = 'k, window_start, window_end, n, nv, s, lo, hi, a, sq, mk, big'

REF_TUMBLE = (f"SELECT k, date_bin('1 minute', ts, 'epoch') AS window_start, "
              f"date_bin('1 minute', ts, 'epoch') + interval '1 minute' AS window_end, {AGGS} "
              "FROM {t} WHERE {w} GROUP BY 1, 2, 3")
REF_HOP = (f"SELECT k, w AS window_start, w + interval '90 seconds' AS window_end, {AGGS} "
           "FROM {t}, LATERAL generate_series(date_bin('30 seconds', ts, 'epoch') - interval '60 seconds', "
           "date_bin('30 seconds', ts, 'epoch'), interval '30 seconds') AS g(w) "
           "WHERE ts >= w AND ts < w + interval '90 seconds' AND {w} GROUP BY 1, 2, 3")
# sessions: gaps and islands, a new session where the gap to the key's previous record is >= 20 s
REF_SESSION = (f"SELECT k, min(ts) AS window_start, max(ts) + interval '20 seconds' AS window_end, {AGGS} "
               "FROM (SELECT *, sum(CASE WHEN gap < interval '20 seconds' THEN 0 ELSE 1 END) OVER (PARTITION BY k ORDER BY ts "
               "ROWS UNBOUNDED PRECEDING) AS sid FROM (SELECT *, ts - lag(ts) OVER (PARTITION BY k ORDER BY ts) AS gap "
               "FROM {t} WHERE {w}) g) s GROUP BY k, sid")


def window_fn(kind, stream, lag='10 seconds'):
    return {
        'tumble': f"stream.tumble('{stream}', size => '1 minute', time_column => 'ts', watermark_lag => '{lag}')",
        'hop': f"stream.hop('{stream}', size => '90 seconds', slide => '30 seconds', time_column => 'ts', "
               f"watermark_lag => '{lag}')",
        'session': f"stream.session('{stream}', gap => '20 seconds', time_column => 'ts', watermark_lag => '{lag}')",
    }[kind]


REFS = {'tumble': REF_TUMBLE, 'hop': REF_HOP, 'session': REF_SESSION}


def query_sql(fn, where='q <> 13'):
    return f'SELECT k, window_start, window_end, {AGGS} FROM {fn} AS t({COLS}) ' \
           f'WHERE {where} GROUP BY k, window_start, window_end'


def reference(kind, table, where='q <> 13'):
    return REFS[kind].format(t=table, w=where)


def put_all(conn, stream, recs, hash_keys):
    """recs: (shard, text) in put order, 97 a call."""
    for lo in range(0, len(recs), 97):
        chunk = recs[lo:lo + 97]
        q(conn, 'SELECT count(*) FROM stream.put_records(%s, %s, %s::bytea[], %s)',
          (stream, ['pk'] * len(chunk), [r[1].encode() for r in chunk], [hash_keys[r[0]] for r in chunk]))


def hash_keys(conn, stream):
    return [r[0] for r in q(conn, "SELECT starting_hash_key::text FROM stream.shards sh JOIN stream.streams s "
                                  "USING (stream_id) WHERE s.stream_name = %s ORDER BY shard_index", (stream,))]


def load_reference_table(conn, name, rows):
    """rows: (k, v, q, ts) tuples."""
    q(conn, f'CREATE TABLE IF NOT EXISTS {name} (k text, v numeric, q int, ts timestamptz)')
    for lo in range(0, len(rows), 500):
        chunk = rows[lo:lo + 500]
        q(conn, f'INSERT INTO {name} SELECT * FROM unnest(%s::text[], %s::numeric[], %s::int[], %s::timestamptz[])',
          ([r[0] for r in chunk], [r[1] for r in chunk], [r[2] for r in chunk], [r[3] for r in chunk]))


def sentinels(nshards, at):
    """One record per shard at time at: the watermark passes every earlier window."""
    return [(i, json.dumps({'k': 'sentinel', 'v': 0, 'q': 0, 'ts': at.isoformat()})) for i in range(nshards)]


def rows_of(conn, sql):
    return sorted(tuple(str(c) for c in r) for r in q(conn, sql))


def compare(conn, what, dest, ref_sql):
    """The destination equals the reference as a multiset, no window twice; returns the row count."""
    got = rows_of(conn, f'SELECT {OUT} FROM {dest}')
    want = rows_of(conn, f'SELECT {OUT} FROM ({ref_sql}) x')
    dups = q1(conn, f'SELECT count(*) FROM (SELECT k, window_start, window_end FROM {dest} '
                    'GROUP BY 1, 2, 3 HAVING count(*) > 1) d')
    check(dups == 0, f'{what}: {dups} windows emitted twice')
    if not check(got == want, f'{what}: {len(got)} rows, reference {len(want)}'):
        for r in sorted(set(got) ^ set(want))[:5]:
            say(f'  {"got " if r in got else "want"} {r}')
    return len(got)


def wait_watermark(conn, names, at_least, timeout=240, lag=timedelta(0)):
    import streamtest as st

    def done():
        rows = q(conn, 'SELECT query_name, watermark FROM stream.continuous_query_status '
                       'WHERE query_name = ANY(%s)', (list(names),))
        return len(rows) == len(names) and all(w is not None and w >= at_least - lag for _, w in rows)
    return st.wait_for(done, timeout, f'watermarks of {names} past {at_least}')
