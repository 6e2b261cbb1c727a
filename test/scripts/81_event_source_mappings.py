#!/usr/bin/python3
"""Event source mappings (issue 11): Lambda's trigger of a function per
batch of a shard, run by the database worker.

1. Exactly once: seeded random records (0 B to TOAST, multibyte keys, two
   shards) put in random batches reach the function's table once each,
   with their data, through the composite and the jsonb event shapes.
2. Bisection: a poison record at a random position of one committed batch
   is isolated by halving; only it reaches the failure table (Lambda's
   record: condition, KinesisBatchInfo with batchSize 1, its data), every
   other record's effects exist once.
3. Retries: without bisection a failing batch is invoked exactly
   maximum_retry_attempts + 1 times, its effects never commit, the whole
   batch goes to the failure table, and later records flow again.
4. ReportBatchItemFailures: the first attempt reports one item failed;
   the checkpoint moves to it, the retry goes on from it; each record once.
5. Validation: Lambda's ranges and InvalidParameterValueException.
6. Privileges: a role that cannot read the stream, or cannot execute the
   function, cannot create a mapping; the function runs as the mapping's
   owner and a setting it changes does not leak into the next invocation.
"""
import base64
import hashlib
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
import streamtest as st  # noqa: E402
from streamtest import check, q, q1  # noqa: E402
from streamtest import log as say  # noqa: E402

DB = 'stream_esm'
ROLES = ('esm_owner', 'esm_nobody')
st.configure(DB, statement_timeout='120s', client_min_messages='warning')
SEED = int(os.environ.get('STREAM_TEST_SEED', random.randrange(1 << 30)))
rng = random.Random(SEED)
SIZES = [0, 1, 126, 127, 128, 2048, 8192, 9000]
KEYS = ['a', 'ключ', 'é', '鍵', 'k', 'z' * 250]
WAIT = 180


def payload(n):
    return bytes(rng.randrange(256) for _ in range(n)) if n < 200 else os.urandom(n)


def put_batch(conn, stream, recs):
    """One put_records call (one commit) of (key, data) pairs."""
    rows = q(conn, 'SELECT error_code FROM stream.put_records(%s, %s, %s::bytea[])',
             (stream, [k for k, _ in recs], [bytes(d) for _, d in recs]))
    check(all(r[0] is None for r in rows), 'put_records succeeded')


def status(conn, uuid):
    return q(conn, 'SELECT sum(invocations), sum(errors), sum(records_to_failure_destination) '
                   'FROM stream.event_source_mapping_status WHERE uuid = %s', (uuid,))[0]


def digest(rows):
    return sorted(hashlib.md5(bytes(d)).hexdigest() for d in rows)


def exactly_once(conn):
    q(conn, "SELECT stream.create_stream('es', 2)")
    q(conn, 'CREATE TABLE public.fx (seq text, data bytea)')
    q(conn, 'CREATE TABLE public.fj (seq text, data bytea)')
    q(conn, "CREATE FUNCTION public.fx_h(ev stream.kinesis_event[]) RETURNS void LANGUAGE sql AS "
            "$$ INSERT INTO public.fx SELECT e.sequence_number, e.data FROM unnest(ev) e $$")
    q(conn, "CREATE FUNCTION public.fj_h(ev jsonb) RETURNS jsonb LANGUAGE sql AS "
            "$$ INSERT INTO public.fj SELECT r->'kinesis'->>'sequenceNumber', decode(r->'kinesis'->>'data', 'base64') "
            "FROM jsonb_array_elements(ev->'Records') r; SELECT NULL::jsonb $$")
    u1 = q1(conn, "SELECT stream.create_event_source_mapping('public.fx_h(stream.kinesis_event[])', 'es', "
                  "'TRIM_HORIZON', batch_size => %s)", (rng.choice([1, 3, 100, 10000]),))
    u2 = q1(conn, "SELECT stream.create_event_source_mapping('public.fj_h(jsonb)', "
                  "'arn:aws:kinesis:local:000000000000:stream/es', 'TRIM_HORIZON', batch_size => %s)",
            (rng.choice([2, 7, 500]),))
    put = []
    for _ in range(rng.randrange(3, 12)):
        recs = [(rng.choice(KEYS) + str(rng.randrange(100)), payload(rng.choice(SIZES)))
                for _ in range(rng.randrange(0, 40))]
        if recs:
            put_batch(conn, 'es', recs)
        put += recs
    n = len(put)
    for t in ('fx', 'fj'):
        st.wait_for(lambda: q1(conn, f'SELECT count(*) FROM public.{t}') >= n, WAIT, f'{n} records in {t}')
        rows = q(conn, f'SELECT data FROM public.{t}')
        check(len(rows) == n, f'{t}: {len(rows)} rows for {n} records')
        check(q1(conn, f'SELECT count(DISTINCT seq) FROM public.{t}') == n, f'{t}: each record once')
        check(digest(r[0] for r in rows) == digest(d for _, d in put), f'{t}: the records\' data')
    for u in (u1, u2):
        inv, err, dlq = status(conn, u)
        check(err == 0 and dlq == 0 and inv >= 1, f'status of {u}: {inv} {err} {dlq}')
    say(f'exactly once: {n} records through both event shapes')


def bisection(conn):
    q(conn, "SELECT stream.create_stream('ep', 1)")
    q(conn, 'CREATE TABLE public.pout (data bytea)')
    q(conn, 'CREATE TABLE public.pdlq (id serial, failure jsonb)')
    q(conn, "CREATE FUNCTION public.p_h(ev stream.kinesis_event[]) RETURNS void LANGUAGE plpgsql AS $$ "
            "BEGIN INSERT INTO public.pout SELECT e.data FROM unnest(ev) e; "
            "IF EXISTS (SELECT 1 FROM unnest(ev) e WHERE e.data = 'POISON') THEN RAISE EXCEPTION 'poison'; END IF; END $$")
    size = rng.choice([2, 5, 16, 64])
    u = q1(conn, "SELECT stream.create_event_source_mapping('public.p_h(stream.kinesis_event[])', 'ep', "
                 "'TRIM_HORIZON', batch_size => %s, bisect_batch_on_function_error => true, "
                 "maximum_retry_attempts => 1, on_failure_destination => 'public.pdlq')", (size,))
    m = rng.randrange(1, 50)
    pos = rng.randrange(m)
    recs = [('k%d' % rng.randrange(5), b'POISON' if i == pos else b'ok-%d' % i) for i in range(m)]
    put_batch(conn, 'ep', recs)
    st.wait_for(lambda: q1(conn, 'SELECT count(*) FROM public.pdlq') >= 1
                and q1(conn, 'SELECT count(*) FROM public.pout') >= m - 1, WAIT, 'the poison isolated')
    st.wait_for(lambda: q1(conn, "SELECT count(*) FROM stream.event_source_mapping_status "
                                 "WHERE uuid = %s AND state = 'Enabled'", (u,)) == 1, WAIT, 'bisection over')
    out = sorted(bytes(r[0]) for r in q(conn, 'SELECT data FROM public.pout'))
    check(out == sorted(d for _, d in recs if d != b'POISON'), f'every other record once (batch {size}, {m} records, poison at {pos})')
    f = q(conn, 'SELECT failure FROM public.pdlq')
    check(len(f) == 1, f'one failure record: {len(f)}')
    f = f[0][0]
    check(f['requestContext']['condition'] == 'RetryAttemptsExhausted', f'condition: {f["requestContext"]}')
    check(f['requestContext']['approximateInvokeCount'] == 2, 'invoked twice alone (one retry)')
    bi = f['KinesisBatchInfo']
    check(bi['batchSize'] == 1 and bi['startSequenceNumber'] == bi['endSequenceNumber']
          and bi['shardId'] == 'shardId-000000000000' and bi['streamArn'].endswith('/ep'), f'batch info {bi}')
    check([base64.b64decode(r['data']) for r in f['records']] == [b'POISON'], 'only the poison record\'s data')
    inv, err, dlq = status(conn, u)
    check(dlq == 1, f'one record to the failure destination: {dlq}')
    say(f'bisection: poison at {pos} of {m} (batch {size}) alone in the failure table; {inv} invocations, {err} errors')


def retries(conn):
    q(conn, "SELECT stream.create_stream('er', 1)")
    q(conn, 'CREATE TABLE public.rout (data bytea)')
    q(conn, 'CREATE TABLE public.rdlq (failure jsonb)')
    q(conn, "CREATE FUNCTION public.r_h(ev stream.kinesis_event[]) RETURNS void LANGUAGE plpgsql AS $$ "
            "BEGIN INSERT INTO public.rout SELECT e.data FROM unnest(ev) e; "
            "IF EXISTS (SELECT 1 FROM unnest(ev) e WHERE e.data = 'BAD') THEN RAISE EXCEPTION 'bad batch'; END IF; END $$")
    r = rng.randrange(0, 4)
    u = q1(conn, "SELECT stream.create_event_source_mapping('public.r_h(stream.kinesis_event[])', 'er', "
                 "'TRIM_HORIZON', batch_size => 1000, maximum_retry_attempts => %s, "
                 "on_failure_destination => 'public.rdlq')", (r,))
    k = rng.randrange(1, 30)
    recs = [('p', b'BAD' if i == 0 else b'r-%d' % i) for i in range(k)]
    rng.shuffle(recs)
    put_batch(conn, 'er', recs)
    st.wait_for(lambda: q1(conn, 'SELECT count(*) FROM public.rdlq') >= 1, WAIT, 'the failed batch')
    inv, err, dlq = status(conn, u)
    check(inv == r + 1 and err == r + 1, f'{r} retries: {inv} invocations, {err} errors (expected {r + 1})')
    check(dlq == k, f'{k} records to the failure destination: {dlq}')
    check(q1(conn, 'SELECT count(*) FROM public.rout') == 0, 'a failed invocation leaves no effect')
    f = q1(conn, 'SELECT failure FROM public.rdlq')
    check(f['KinesisBatchInfo']['batchSize'] == k and f['requestContext']['approximateInvokeCount'] == r + 1,
          f'failure record {f["KinesisBatchInfo"]} {f["requestContext"]}')
    put_batch(conn, 'er', [('p', b'after')])
    st.wait_for(lambda: q1(conn, 'SELECT count(*) FROM public.rout') == 1, WAIT, 'later records flow')
    check(status(conn, u)[0] == r + 2, 'one more invocation')
    say(f'retries: {r} retries of a batch of {k}: exactly {r + 1} invocations')


def batch_item_failures(conn):
    q(conn, "SELECT stream.create_stream('ef', 1)")
    q(conn, 'CREATE TABLE public.bout (seq text, data bytea)')
    q(conn, 'CREATE TABLE public.bseen (seq text)')
    q(conn, """CREATE FUNCTION public.b_h(ev jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
        DECLARE r jsonb;
        BEGIN
            FOR r IN SELECT x FROM jsonb_array_elements(ev->'Records') x LOOP
                IF decode(r->'kinesis'->>'data', 'base64') = 'FAIL'
                   AND NOT EXISTS (SELECT 1 FROM public.bseen s WHERE s.seq = r->'kinesis'->>'sequenceNumber') THEN
                    INSERT INTO public.bseen VALUES (r->'kinesis'->>'sequenceNumber');
                    RETURN jsonb_build_object('batchItemFailures',
                        jsonb_build_array(jsonb_build_object('itemIdentifier', r->'kinesis'->>'sequenceNumber')));
                END IF;
                INSERT INTO public.bout VALUES (r->'kinesis'->>'sequenceNumber', decode(r->'kinesis'->>'data', 'base64'));
            END LOOP;
            RETURN '{"batchItemFailures": []}';
        END $$""")
    u = q1(conn, "SELECT stream.create_event_source_mapping('public.b_h(jsonb)', 'ef', 'TRIM_HORIZON', "
                 "batch_size => 10000, function_response_types => '{ReportBatchItemFailures}')")
    k = rng.randrange(1, 40)
    pos = rng.randrange(k)
    recs = [('q', b'FAIL' if i == pos else b'b-%d' % i) for i in range(k)]
    put_batch(conn, 'ef', recs)
    st.wait_for(lambda: q1(conn, 'SELECT count(*) FROM public.bout') >= k, WAIT, 'every record')
    check(q1(conn, 'SELECT count(DISTINCT seq) FROM public.bout') == k
          and q1(conn, 'SELECT count(*) FROM public.bout') == k, 'each record once')
    check([bytes(r[0]) for r in q(conn, 'SELECT data FROM public.bout ORDER BY seq')] == [d for _, d in recs],
          'in order')
    inv, err, dlq = status(conn, u)
    check(inv == 2 and err == 1, f'one partial failure, one retry: {inv} invocations, {err} errors')
    say(f'ReportBatchItemFailures: failed item at {pos} of {k} retried from it')


def validation(conn):
    q(conn, "SELECT stream.create_stream('ev', 1)")
    q(conn, "CREATE FUNCTION public.v_h(ev stream.kinesis_event[]) RETURNS void LANGUAGE sql AS 'SELECT'")
    q(conn, "CREATE FUNCTION public.v_bad(x int) RETURNS void LANGUAGE sql AS 'SELECT'")
    fn = "'public.v_h(stream.kinesis_event[])'"
    bad = [('batch_size => 0', 'BatchSize'), ('batch_size => 10001', 'BatchSize'),
           ('maximum_batching_window_in_seconds => 301', 'MaximumBatchingWindowInSeconds'),
           ('maximum_batching_window_in_seconds => -1', 'MaximumBatchingWindowInSeconds'),
           ('parallelization_factor => 0', 'ParallelizationFactor'),
           ('parallelization_factor => 11', 'ParallelizationFactor'),
           ('maximum_retry_attempts => -2', 'MaximumRetryAttempts'),
           ('maximum_retry_attempts => 10001', 'MaximumRetryAttempts'),
           ('maximum_record_age_in_seconds => 59', 'MaximumRecordAgeInSeconds'),
           ('maximum_record_age_in_seconds => 0', 'MaximumRecordAgeInSeconds'),
           ('maximum_record_age_in_seconds => 604801', 'MaximumRecordAgeInSeconds'),
           ('tumbling_window_in_seconds => 901', 'TumblingWindowInSeconds'),
           ("starting_position => 'AT_SEQUENCE_NUMBER'", 'StartingPosition'),
           ("starting_position => 'AT_TIMESTAMP'", 'StartingPositionTimestamp'),
           ("function_response_types => '{Other}'", 'FunctionResponseTypes'),
           ("on_failure_destination => 'public.nosuch'", 'on_failure_destination')]
    for arg, word in bad:
        st.expect_error(conn, f"SELECT stream.create_event_source_mapping({fn}, 'ev', {arg})", None, '22023',
                        'InvalidParameterValueException: ' + word, arg)
    st.expect_error(conn, "SELECT stream.create_event_source_mapping('public.v_bad(int)', 'ev')", None, '22023',
                    'InvalidParameterValueException', 'wrong argument type')
    st.expect_error(conn, f"SELECT stream.create_event_source_mapping({fn}, 'nosuch')", None, '42704',
                    'ResourceNotFoundException', 'no such stream')
    for ok in ('maximum_record_age_in_seconds => -1', 'maximum_record_age_in_seconds => 60',
               'maximum_record_age_in_seconds => 604800', 'maximum_retry_attempts => 10000',
               'batch_size => 10000', 'maximum_batching_window_in_seconds => 300'):
        u = q1(conn, f"SELECT stream.create_event_source_mapping({fn}, 'ev', {ok})")
        check(q1(conn, 'SELECT stream.get_event_source_mapping(%s)', (u,))['UUID'] == u, ok)
        q(conn, 'SELECT stream.delete_event_source_mapping(%s)', (u,))
    u = q1(conn, f"SELECT stream.create_event_source_mapping({fn}, 'ev')")
    st.expect_error(conn, 'SELECT stream.update_event_source_mapping(%s, batch_size => 20000)', (u,), '22023',
                    'BatchSize', 'update checks ranges')
    j = q1(conn, 'SELECT stream.update_event_source_mapping(%s, batch_size => 7, enabled => false)', (u,))
    check(j['BatchSize'] == 7 and j['State'] == 'Disabled', f'update: {j}')
    check(len(q1(conn, "SELECT stream.list_event_source_mappings('ev')")['EventSourceMappings']) == 1, 'listed')
    q(conn, 'SELECT stream.delete_event_source_mapping(%s)', (u,))
    st.expect_error(conn, 'SELECT stream.get_event_source_mapping(%s)', (u,), '42704', 'ResourceNotFoundException',
                    'deleted')
    say(f'validation: {len(bad) + 2} bad calls refused')


def privileges(conn):
    q(conn, "SELECT stream.create_stream('ea', 1)")
    for r in ROLES:
        q(conn, f'CREATE ROLE {r} LOGIN')
    q(conn, 'CREATE TABLE public.aout (who text, work_mem text, data bytea)')
    q(conn, 'GRANT INSERT ON public.aout TO esm_owner')
    q(conn, "CREATE FUNCTION public.a_h(ev stream.kinesis_event[]) RETURNS void LANGUAGE sql AS "
            "$$ INSERT INTO public.aout SELECT current_user, current_setting('work_mem'), e.data FROM unnest(ev) e; "
            "SELECT set_config('work_mem', '77MB', false) $$")
    q(conn, 'REVOKE EXECUTE ON FUNCTION public.a_h(stream.kinesis_event[]) FROM PUBLIC')
    fn = "'public.a_h(stream.kinesis_event[])'"
    nobody = st.connect(user='esm_nobody')
    st.expect_error(nobody, f"SELECT stream.create_event_source_mapping({fn}, 'ea')", None, '42501',
                    'AccessDeniedException', 'no read access')
    owner = st.connect(user='esm_owner')
    q(conn, "SELECT stream.grant_stream_access('ea', 'esm_owner', 'read')")
    st.expect_error(owner, f"SELECT stream.create_event_source_mapping({fn}, 'ea')", None, '42501',
                    'AccessDeniedException', 'no EXECUTE')
    q(conn, 'GRANT EXECUTE ON FUNCTION public.a_h(stream.kinesis_event[]) TO esm_owner')
    u = q1(owner, f"SELECT stream.create_event_source_mapping({fn}, 'ea', 'TRIM_HORIZON', batch_size => 1)")
    check(len(q(nobody, 'SELECT * FROM stream.event_source_mapping_status')) == 0, 'others see no status')
    st.expect_error(nobody, 'SELECT stream.delete_event_source_mapping(%s)', (u,), '42704',
                    'ResourceNotFoundException', 'others cannot delete it')
    n = rng.randrange(2, 8)
    for i in range(n):
        put_batch(conn, 'ea', [('x', b'a-%d' % i)])
    st.wait_for(lambda: q1(conn, 'SELECT count(*) FROM public.aout') >= n, WAIT, 'owner invocations')
    rows = q(conn, 'SELECT who, work_mem FROM public.aout')
    check(all(r[0] == 'esm_owner' for r in rows), f'runs as the owner: {set(r[0] for r in rows)}')
    check(all(r[1] != '77MB' for r in rows), f'settings restored: {set(r[1] for r in rows)}')
    check(len(q(owner, 'SELECT * FROM stream.event_source_mapping_status')) == 1, 'the owner sees its status')
    q(owner, 'SELECT stream.delete_event_source_mapping(%s)', (u,))
    nobody.close()
    owner.close()
    say(f'privileges: refused without read or EXECUTE; {n} invocations as the owner, settings restored')


def main():
    say(f'seed {SEED}')
    conn = st.create_db(roles=ROLES, extension=True)
    validation(conn)
    exactly_once(conn)
    bisection(conn)
    retries(conn)
    batch_item_failures(conn)
    privileges(conn)
    conn.close()


st.main_wrapper(main, lambda: st.drop_db(roles=ROLES, on_error=st.warn))
