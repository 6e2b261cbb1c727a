#!/usr/bin/python3
"""More attacks on the stream worker by the roles it serves (after 66).

The worker is one superuser session per database that runs every delivery
stream's owner code (src/sandbox.c).  The attackers: `ka_owner` (LOGIN,
EXECUTE on create/delete_delivery_stream, its own schema, nothing else),
`ka_reader` (a read grant on stream `public_s` only) and `ka_plain` (LOGIN).
`ka_other` owns an honest delivery stream whose delivery must go on, and the
worker must stay the same process (no crash, no restart) throughout.

stream.owner_code_timeout is 500 ms here.  Each attack, and what must hold:

* time limit caught: owner code that catches query_canceled and loops is
  still stopped at the limit (the cancel is raised again after every catch);
* time limit multiplied: a domain check or trigger that sleeps just under the
  limit and then fails, once per record or row, or a transform that does so
  on every retry, gets one budget per phase of a batch, not one per call;
* destination lock: a transaction of the owner holding its destination table
  locked does not make the worker wait (the batch is retried with back-off);
  a lock on a table only its trigger uses costs at most the time limit;
* session state: advisory locks (pg_advisory_lock, pg_advisory_unlock_all)
  do not outlive the delivery; SET ROLE/SESSION AUTHORIZATION, LISTEN,
  PREPARE, WITH HOLD cursors, temporary tables, LOAD, DISCARD and
  terminating the worker are refused; TimeZone/DateStyle/is_local/custom
  settings do not leak into the next call or another owner's rows;
  re-deferring a trigger from a deferred trigger cannot make it fire at the
  worker's commit as superuser; a dblink loopback needs a password;
* the delivery catalog: a role sees manifest and progress rows (which name
  files by partition key values, i.e. record data) only of delivery streams
  it owns;
* caller tracking: an error thrown out of a nested API call leaves no stale
  caller; a trigger calling the API acts for the role whose statement fired it;
* redefining the destination table from a domain check in the middle of a
  batch, a transform returning non-object partition keys, and a transform
  that flushes its own delivery stream (waiting for the worker itself) neither
  crash nor hang the worker;
* a cast to json of the owner's type, which the JSON file writer calls for a
  schema column, loops catching cancels: cut off like any owner code.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import check, configure, connect, create_db, drop_db, expect_error, finish  # noqa: E402
from streamtest import delivered_files, q, q1, run_subtests, wait_for, warn, workdir  # noqa: E402
from streamtest import log as say  # noqa: E402

DB = 'stream_owner_attacks'
ROLES = ('ka_owner', 'ka_other', 'ka_reader', 'ka_plain')
LIMIT_MS = 500
configure(DB, statement_timeout='120s', client_min_messages='warning')
conn = create_db(roles=ROLES, extension=True)
LAKE = workdir('owner_attacks')

CREATE_DS = ("stream.create_delivery_stream(text, text, text, regclass, text, regtype, text, int, int, "
             "text, text, jsonb, regprocedure, text, text)")
TF = 'stream.firehose_record[]'
OK_ROWS = "RETURN QUERY SELECT r.record_id, 'Ok'::text, r.data, NULL::jsonb FROM unnest(records) r;"


def worker_pid():
    return q1(conn, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'stream worker' "
                    "AND datname = current_database()")


def put(c, name, docs):
    for d in docs:
        q(c, "SELECT stream.put_delivery_record(%s, convert_to(%s, 'UTF8'))", (name, d))


def flush(name, timeout=30, c=None):
    return q1(c or conn, "SELECT stream.flush_delivery_stream(%s, %s)", (name, timeout))


def last_error(name):
    return q1(conn, "SELECT last_error FROM stream.processor_progress JOIN stream.delivery_streams "
                    "ON delivery_stream_id = processor_id WHERE delivery_stream_name = %s", (name,))


def errors_of(name):
    return q(conn, "SELECT e.envelope FROM stream.processor_errors e JOIN stream.delivery_streams "
                   "ON delivery_stream_id = e.processor_id WHERE delivery_stream_name = %s ORDER BY e.created_at", (name,))


_other_n = [0]


def other_latency(limit=20):
    """Seconds until one new record of the honest owner is delivered."""
    _other_n[0] += 1
    t0 = time.monotonic()
    put(other, 'honest', ['{"n": %d}' % _other_n[0]])
    ok = flush('honest', limit, other)
    took = time.monotonic() - t0
    return took if ok else None


def owned(name, table_sql, transform=None, **kw):
    """A table delivery stream of ka_owner."""
    q(oc, table_sql)
    args = {'destination_table': 'ka_owner.' + name, 'buffer_interval_seconds': 900}
    if transform:
        args['transform_function'] = 'ka_owner.%s(%s)' % (transform, TF)
    args.update(kw)
    named = ', '.join('%s => %%(%s)s' % (k, k) for k in args)
    q(oc, "SELECT stream.create_delivery_stream(%%(n)s, %s)" % named, dict(args, n=name))


def setup():
    global oc, other, pid0
    try:
        q(conn, "ALTER SYSTEM SET stream.owner_code_timeout = '%dms'" % LIMIT_MS)
    except Exception as e:  # noqa: BLE001  (a build without the setting: the attacks still run)
        check(False, 'stream.owner_code_timeout cannot be set: %s' % e)
    q(conn, "SELECT pg_reload_conf()")
    for r in ROLES:
        q(conn, "CREATE ROLE %s LOGIN" % r)
    q(conn, "CREATE SCHEMA ka_owner AUTHORIZATION ka_owner; CREATE SCHEMA ka_other AUTHORIZATION ka_other")
    q(conn, f"GRANT EXECUTE ON FUNCTION {CREATE_DS}, stream.delete_delivery_stream(text) TO ka_owner, ka_other")
    q(conn, "SELECT stream.create_stream('secret', 1)")
    q(conn, "SELECT stream.create_stream('public_s', 1)")
    q(conn, "SELECT stream.grant_stream_access('public_s', 'ka_reader', 'read')")
    q(conn, "CREATE TABLE ka_owner.log (at timestamptz DEFAULT clock_timestamp(), place text, note text)")
    q(conn, "ALTER TABLE ka_owner.log OWNER TO ka_owner")
    oc = connect(user='ka_owner')
    other = connect(user='ka_other')
    q(other, "CREATE TABLE ka_other.sink (n int, ts timestamptz, d date)")
    q(other, "SELECT stream.create_delivery_stream('honest', destination_table => 'ka_other.sink', "
             "buffer_interval_seconds => 900)")
    time.sleep(0.5)            # the reload reaches the worker
    check(other_latency() is not None, 'the honest owner delivers before the attacks')
    pid0 = worker_pid()
    check(pid0 is not None, 'a stream worker runs')


def notes(place):
    return [r[0] for r in q(conn, "SELECT note FROM ka_owner.log WHERE place = %s ORDER BY at", (place,))]


# ---------------------------------------------------------------- time limit

def t_caught_cancel():
    say('owner code that catches query_canceled and goes on is stopped at the time limit anyway')
    q(oc, """CREATE FUNCTION ka_owner.stubborn(records %s) RETURNS SETOF stream.firehose_result
             LANGUAGE plpgsql AS $$
             DECLARE t0 timestamptz := clock_timestamp(); caught int := 0;
             BEGIN
                 WHILE clock_timestamp() < t0 + interval '12 seconds' LOOP
                     BEGIN
                         PERFORM pg_sleep(1);
                     EXCEPTION WHEN query_canceled THEN caught := caught + 1;
                     END;
                 END LOOP;
                 INSERT INTO ka_owner.log (place, note) VALUES ('stubborn', 'survived ' || caught || ' cancels');
                 %s
             END $$""" % (TF, OK_ROWS))
    owned('stubborn_sink', "CREATE TABLE ka_owner.stubborn_sink (n int)", transform='stubborn')
    # the same in a trigger of the destination
    q(oc, """CREATE FUNCTION ka_owner.stubborn_trg() RETURNS trigger LANGUAGE plpgsql AS $$
             DECLARE t0 timestamptz := clock_timestamp(); caught int := 0;
             BEGIN
                 WHILE clock_timestamp() < t0 + interval '12 seconds' LOOP
                     BEGIN
                         PERFORM pg_sleep(1);
                     EXCEPTION WHEN query_canceled THEN caught := caught + 1;
                     END;
                 END LOOP;
                 INSERT INTO ka_owner.log (place, note) VALUES ('stubborn trigger', 'survived ' || caught || ' cancels');
                 RETURN NEW;
             END $$""")
    owned('stubborn_trg_sink', "CREATE TABLE ka_owner.stubborn_trg_sink (n int); "
          "CREATE TRIGGER t BEFORE INSERT ON ka_owner.stubborn_trg_sink FOR EACH ROW "
          "EXECUTE FUNCTION ka_owner.stubborn_trg()")
    for ds in ('stubborn_sink', 'stubborn_trg_sink'):
        put(oc, ds, ['{"n": 1}'])
        flush(ds, 0)
        time.sleep(0.3)        # the worker is in the owner's code now
        took = other_latency()
        check(took is not None and took < 5,
              '%s: the honest owner waited %s s for the worker (the caught cancel kept the owner\'s code running)'
              % (ds, None if took is None else round(took, 1)))
    wait_for(lambda: any('owner_code_timeout' in str(e[0]) for e in errors_of('stubborn_sink')), 20,
             'the stubborn transform\'s record failed with the time limit')
    wait_for(lambda: 'owner_code_timeout' in (last_error('stubborn_trg_sink') or ''), 20,
             'the stubborn trigger\'s batch failed with the time limit')
    check(notes('stubborn') == [] and notes('stubborn trigger') == [],
          'the owner\'s code ran to its end: %r %r' % (notes('stubborn'), notes('stubborn trigger')))
    check(q1(conn, "SELECT count(*) FROM ka_owner.stubborn_sink") == 0, 'nothing of the timed-out transform delivered')


def t_multiplied_limit():
    say('sleeping just under the limit, then failing, per record, per row or per retry: one budget per phase')
    nap = LIMIT_MS * 0.8 / 1000
    q(oc, """CREATE FUNCTION ka_owner.nap_fail(v int) RETURNS bool LANGUAGE plpgsql AS $$
             BEGIN PERFORM pg_sleep(%s); RAISE EXCEPTION 'record %% refused', v; END $$""" % nap)
    q(oc, "CREATE DOMAIN ka_owner.nap_int AS int CHECK (ka_owner.nap_fail(VALUE))")
    owned('nap_domain', "CREATE TABLE ka_owner.nap_domain (n ka_owner.nap_int)")
    q(oc, """CREATE FUNCTION ka_owner.nap_trg() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN PERFORM pg_sleep(%s); RAISE EXCEPTION 'row refused'; END $$""" % nap)
    owned('nap_rows', "CREATE TABLE ka_owner.nap_rows (n int); CREATE TRIGGER t BEFORE INSERT ON ka_owner.nap_rows "
          "FOR EACH ROW EXECUTE FUNCTION ka_owner.nap_trg()")
    n = 25                     # 25 x 0.4 s = 10 s of the worker, were the limit per call
    for ds in ('nap_domain', 'nap_rows'):
        put(oc, ds, ['{"n": %d}' % i for i in range(n)])
        flush(ds, 0)
        time.sleep(0.3)
        took = other_latency()
        check(took is not None and took < 4,
              '%s: the honest owner waited %s s (the owner\'s code ran once per record, %d x %.1f s)'
              % (ds, None if took is None else round(took, 1), n, nap))
        wait_for(lambda: 'owner_code_timeout' in (last_error(ds) or ''), 20,
                 '%s: the batch fails with the time limit and is retried with back-off' % ds)
    # a transform that fails just under the limit is retried, but within one budget
    q(oc, """CREATE FUNCTION ka_owner.nap_tf(records %s) RETURNS SETOF stream.firehose_result
             LANGUAGE plpgsql AS $$
             BEGIN
                 INSERT INTO ka_owner.log (place, note) VALUES ('nap transform', 'called');
                 PERFORM pg_sleep(%s); RAISE EXCEPTION 'transform refused';
             END $$""" % (TF, nap))
    owned('nap_tf_sink', "CREATE TABLE ka_owner.nap_tf_sink (n int)", transform='nap_tf')
    put(oc, 'nap_tf_sink', ['{"n": 1}'])
    check(flush('nap_tf_sink') is True, 'the failing transform\'s batch completes')
    env = errors_of('nap_tf_sink')
    check(len(env) == 1 and env[0][0].get('errorCode') == 'Lambda.FunctionError'
          and env[0][0].get('attemptsMade', 9) <= 2,
          'the transform was attempted at most twice in its budget: %r' % env)


def t_destination_lock():
    say('the owner holds its destination table locked: the worker must not wait for it')
    q(oc, """CREATE FUNCTION ka_owner.logged_tf(records %s) RETURNS SETOF stream.firehose_result
             LANGUAGE plpgsql AS $$
             BEGIN INSERT INTO ka_owner.log (place, note) VALUES ('logged transform', 'called'); %s END $$"""
      % (TF, OK_ROWS))
    owned('locked_sink', "CREATE TABLE ka_owner.locked_sink (n int)", transform='logged_tf')
    holder = connect(user='ka_owner')
    holder.autocommit = False
    try:
        q(holder, "LOCK TABLE ka_owner.locked_sink IN ACCESS EXCLUSIVE MODE")
        put(oc, 'locked_sink', ['{"n": 1}'])
        flush('locked_sink', 0)
        time.sleep(1.5)        # longer than the time limit
        wait = q1(conn, "SELECT wait_event_type || ':' || wait_event FROM pg_stat_activity "
                        "WHERE pid = %s", (worker_pid(),))
        took = other_latency(limit=8)
        check(took is not None and took < 4,
              'the honest owner waited %s s while ka_owner held its table (worker waits on %s)'
              % (None if took is None else round(took, 1), wait))
        wait_for(lambda: 'locked' in (last_error('locked_sink') or ''), 10,
                 'the locked destination shows as the last error')
        check(notes('logged transform') == [], 'the transform ran for a batch that could not be delivered')
    finally:
        holder.rollback()
        holder.close()
    q(conn, "UPDATE stream.processor_progress SET next_attempt_at = NULL WHERE processor_id = "
            "(SELECT delivery_stream_id FROM stream.delivery_streams WHERE delivery_stream_name = 'locked_sink')")
    check(flush('locked_sink') is True and q1(conn, "SELECT count(*) FROM ka_owner.locked_sink") == 1,
          'once the lock is gone the record is delivered')

    say('a table only the destination\'s trigger uses, locked: the time limit bounds the wait')
    q(oc, "CREATE TABLE ka_owner.aux (n int)")
    q(oc, """CREATE FUNCTION ka_owner.aux_trg() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN INSERT INTO ka_owner.aux VALUES (NEW.n); RETURN NEW; END $$""")
    owned('aux_sink', "CREATE TABLE ka_owner.aux_sink (n int); CREATE TRIGGER t BEFORE INSERT ON ka_owner.aux_sink "
          "FOR EACH ROW EXECUTE FUNCTION ka_owner.aux_trg()")
    holder = connect(user='ka_owner')
    holder.autocommit = False
    try:
        q(holder, "LOCK TABLE ka_owner.aux IN ACCESS EXCLUSIVE MODE")
        put(oc, 'aux_sink', ['{"n": 1}'])
        flush('aux_sink', 0)
        time.sleep(0.3)
        took = other_latency(limit=8)
        check(took is not None and took < 4, 'the honest owner waited %s s' % took)
    finally:
        holder.rollback()
        holder.close()


# ---------------------------------------------------------------- session state

def t_session_state():
    say('advisory locks, refused commands and settings of owner code do not outlive its call')
    q(oc, """CREATE FUNCTION ka_owner.try_it(place text, sql text) RETURNS void LANGUAGE plpgsql AS $$
             BEGIN
                 EXECUTE sql;
                 INSERT INTO ka_owner.log (place, note) VALUES (place, 'done: ' || sql);
             EXCEPTION WHEN OTHERS THEN
                 INSERT INTO ka_owner.log (place, note) VALUES (place, 'refused: ' || sql || ': ' || SQLERRM);
             END $$""")
    refused = ["SET ROLE postgres", "SET SESSION AUTHORIZATION postgres",
               "SELECT set_config('session_authorization', 'postgres', false)",
               "SELECT set_config('role', 'postgres', true)", "LISTEN ka_chan", "PREPARE ka_stmt AS SELECT 1",
               "DECLARE ka_cur CURSOR WITH HOLD FOR SELECT 1", "CREATE TEMP TABLE ka_tmp (a int)",
               "LOAD 'dblink'", "DISCARD ALL", "DISCARD PLANS",
               "SELECT pg_terminate_backend(pg_backend_pid())", "SELECT pg_cancel_backend(pg_backend_pid())",
               "ALTER ROLE ka_owner SUPERUSER", "ALTER SYSTEM SET stream.owner_code_timeout = 0",
               "SELECT pg_reload_conf()", "SELECT dblink_connect('ka', 'dbname=%s user=postgres')" % DB]
    q(conn, "CREATE EXTENSION IF NOT EXISTS dblink")
    q(oc, """CREATE FUNCTION ka_owner.state_tf(records %s) RETURNS SETOF stream.firehose_result
             LANGUAGE plpgsql AS $$
             DECLARE s text;
             BEGIN
                 -- what this call found: nothing of the previous call
                 INSERT INTO ka_owner.log (place, note) VALUES ('entry',
                     current_setting('TimeZone') || '|' || current_setting('DateStyle') || '|' ||
                     current_setting('extra_float_digits') || '|' || current_setting('synchronous_commit') || '|' ||
                     coalesce(current_setting('ka.mark', true), '') || '|' || current_setting('work_mem') || '|' ||
                     current_user || '|' || session_user);
                 PERFORM pg_advisory_lock(67001);
                 PERFORM pg_advisory_lock_shared(67002);
                 PERFORM pg_try_advisory_lock(67003);
                 PERFORM pg_advisory_xact_lock(67004);
                 FOREACH s IN ARRAY %s LOOP
                     PERFORM ka_owner.try_it('refused', s);
                 END LOOP;
                 PERFORM set_config('TimeZone', 'Pacific/Kiritimati', false);
                 PERFORM set_config('DateStyle', 'SQL, DMY', false);
                 PERFORM set_config('extra_float_digits', '-15', false);
                 PERFORM set_config('synchronous_commit', 'off', false);
                 PERFORM set_config('ka.mark', 'left behind', false);
                 PERFORM set_config('work_mem', '64kB', true);
                 SET CONSTRAINTS ALL DEFERRED;
                 %s
             END $$""" % (TF, "ARRAY[%s]" % ', '.join("'%s'" % s.replace("'", "''") for s in refused), OK_ROWS))
    owned('state_sink', "CREATE TABLE ka_owner.state_sink (n int)", transform='state_tf')
    pids = []
    for rnd in range(3):
        put(oc, 'state_sink', ['{"n": %d}' % rnd])
        check(flush('state_sink') is True, 'round %d delivered' % rnd)
        # the honest owner's timestamps and dates are read in the worker's own settings
        _other_n[0] += 1
        put(other, 'honest', ['{"n": %d, "ts": "2026-03-04 05:06:07", "d": "04/03/26"}' % (1000 + rnd)])
        check(flush('honest', 20, other) is True, 'round %d: honest delivered' % rnd)
        pids.append(worker_pid())
    entries = notes('entry')
    check(len(entries) == 3 and all(e == 'UTC|ISO, YMD|1|on||4MB|ka_owner|postgres' for e in entries),
          'each call found the worker\'s settings: %r' % entries)
    rows = q(conn, "SELECT ts = '2026-03-04 05:06:07+00', d FROM ka_other.sink WHERE n >= 1000")
    check(len(rows) == 3 and all(r[0] for r in rows) and all(str(r[1]) == '2004-03-26' for r in rows),
          'the honest owner\'s rows were read in UTC and ISO date order: %r' % rows)
    held = q(conn, "SELECT objid, mode FROM pg_locks WHERE locktype = 'advisory' AND objsubid IN (1, 2) "
                   "AND pid = %s", (worker_pid(),))
    check(held == [], 'the worker holds the owner\'s advisory locks after the delivery: %r' % held)
    probe = connect(user='ka_plain')
    check(q1(probe, "SELECT pg_try_advisory_lock(67001) AND pg_try_advisory_lock(67002)") is True,
          'another session can take the advisory locks the owner\'s code took in the worker')
    probe.close()
    for note in notes('refused'):
        check(note.startswith('refused: '), 'owner code in the worker: %s' % note)
    check(len(notes('refused')) == 3 * len(refused), 'every refused command was tried')
    check(q1(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = 'ka_owner'") is False, 'ka_owner is no superuser')
    check(len(set(pids)) == 1 and pids[0] == pid0, 'the worker was not terminated: %r' % pids)

    say('pg_advisory_unlock_all() in owner code: the worker does not release a lock it no longer holds')
    logf = os.environ.get('STREAM_PGLOG')
    start = os.path.getsize(logf) if logf and os.path.exists(logf) else None
    q(oc, """CREATE FUNCTION ka_owner.unlock_tf(records %s) RETURNS SETOF stream.firehose_result
             LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_advisory_unlock_all(); %s END $$""" % (TF, OK_ROWS))
    owned('unlock_sink', "CREATE TABLE ka_owner.unlock_sink (n int)", transform='unlock_tf')
    put(oc, 'unlock_sink', ['{"n": 1}'])
    check(flush('unlock_sink') is True, 'delivered')
    if start is not None:
        with open(logf, 'rb') as f:
            f.seek(start)
            tail = f.read().decode('utf-8', 'replace')
        check("you don't own a lock" not in tail, 'the worker released a lock it did not hold (server log)')

    say('a deferred trigger that defers again cannot make its trigger fire at the worker\'s commit as superuser')
    q(oc, """CREATE TABLE ka_owner.t2 (n int);
             CREATE FUNCTION ka_owner.esc() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 INSERT INTO ka_owner.log (place, note) VALUES ('esc', current_user);
                 BEGIN EXECUTE 'ALTER ROLE ka_owner SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
                 RETURN NULL;
             END $$;
             CREATE CONSTRAINT TRIGGER esc AFTER INSERT ON ka_owner.t2 DEFERRABLE INITIALLY DEFERRED
                 FOR EACH ROW EXECUTE FUNCTION ka_owner.esc();
             CREATE FUNCTION ka_owner.redefer() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN SET CONSTRAINTS ALL DEFERRED; INSERT INTO ka_owner.t2 VALUES (NEW.n); RETURN NULL; END $$""")
    owned('redefer_sink', "CREATE TABLE ka_owner.redefer_sink (n int); CREATE CONSTRAINT TRIGGER r AFTER INSERT "
          "ON ka_owner.redefer_sink DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ka_owner.redefer()")
    put(oc, 'redefer_sink', ['{"n": 1}'])
    flush('redefer_sink', 10)
    check(q1(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = 'ka_owner'") is False,
          'ka_owner became superuser through a re-deferred trigger')
    check(all(w == 'ka_owner' for w in notes('esc')), 'the re-deferred trigger ran as %r' % notes('esc'))


# ---------------------------------------------------------------- catalog

def t_catalog_rows():
    say('manifest and progress rows name files by record data: only the owner may read them')
    q(conn, "SELECT stream.create_delivery_stream('secret_files', source_stream_name => 'secret', "
            "destination => %s, prefix => 'ssn=!{partitionKeyFromQuery:ssn}/', partition_key_queries => "
            "'{\"ssn\": \".ssn\"}', error_output_prefix => 'err/!{firehose:error-output-type}/', "
            "buffer_interval_seconds => 900, starting_position => 'TRIM_HORIZON')", (LAKE + '/secret',))
    q(conn, "SELECT stream.put_record('secret', 'k', convert_to('{\"ssn\": \"078-05-1120\"}', 'UTF8'))")
    check(flush('secret_files') is True, 'the secret stream was delivered')
    check('078-05-1120' in str(q(conn, "SELECT files FROM stream.delivery_manifest")),
          'the manifest names the file by the partition value')
    for role in ('ka_plain', 'ka_reader', 'ka_owner'):
        c = connect(user=role)
        expect_error(c, "SELECT count(*) FROM stream.read_shard('secret', 'shardId-000000000000')", None,
                     '42501', 'not authorized', '%s may not read stream secret' % role)
        for table in ('delivery_manifest', 'delivery_progress', 'delivery_streams', 'processors',
                      'processor_progress', 'processor_errors', 'processor_checkpoints', 'processor_pending'):
            expect_error(c, "SELECT 1 FROM stream.%s" % table, None, '42501', 'permission denied',
                         '%s reads stream.%s' % (role, table))
        seen = q(c, "SELECT files::text FROM stream.delivery_batches UNION ALL "
                    "SELECT coalesce(last_error, '') FROM stream.delivery_stream_status UNION ALL "
                    "SELECT coalesce(last_error, '') FROM stream.processor_status")
        check(not any('078-05-1120' in r[0] for r in seen) and
              q1(c, "SELECT count(*) FROM stream.delivery_batches WHERE delivery_stream_name = 'secret_files'") == 0,
              '%s reads the secret stream\'s partition values from the delivery views' % role)
        c.close()
    mine = q1(oc, "SELECT count(*) FROM stream.delivery_batches")
    check(mine is not None and mine >= 0, 'an owner reads its own batches (%r)' % mine)
    check(q1(other, "SELECT count(*) FROM stream.delivery_stream_status") == 1, 'the honest owner sees its status row')
    status = q(other, "SELECT delivery_stream_name, buffered_records FROM stream.delivery_stream_status")
    check(status == [('honest', 0)], 'the honest owner reads its status row: %r' % status)


# ---------------------------------------------------------------- caller tracking

def t_caller_tracking():
    say('no stale caller after an error out of a nested API call; triggers act for the role that fired them')
    # ka_other's SECURITY DEFINER function fails inside the API (as ka_other) and is caught by ka_owner
    q(other, """CREATE FUNCTION ka_other.failing() RETURNS void LANGUAGE plpgsql SECURITY DEFINER
                SET search_path = pg_catalog AS $$
                BEGIN PERFORM stream.create_delivery_stream('honest', destination_table => 'ka_other.sink'); END $$""")
    q(other, "GRANT EXECUTE ON FUNCTION ka_other.failing() TO ka_owner")
    expect_error(oc, """DO $$ BEGIN
                            BEGIN PERFORM ka_other.failing(); EXCEPTION WHEN OTHERS THEN NULL; END;
                            PERFORM stream.delete_delivery_stream('honest');
                        END $$""", None, '42501', 'only the owner',
                 'ka_owner deletes ka_other\'s delivery stream after ka_other\'s call failed inside the API')
    # a trigger of ka_owner's table calls the API; ka_plain's insert fires it
    q(oc, """CREATE TABLE ka_owner.fire (n int);
             CREATE FUNCTION ka_owner.fire_trg() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN PERFORM stream.delete_delivery_stream('honest'); RETURN NEW; END $$;
             CREATE TRIGGER t AFTER INSERT ON ka_owner.fire FOR EACH ROW EXECUTE FUNCTION ka_owner.fire_trg();
             GRANT INSERT ON ka_owner.fire TO ka_other, ka_plain;
             GRANT USAGE ON SCHEMA ka_owner TO ka_other, ka_plain""")
    plain = connect(user='ka_plain')
    expect_error(plain, "INSERT INTO ka_owner.fire VALUES (1)", None, '42501', 'permission denied',
                 'ka_plain (no EXECUTE) fires a trigger that calls the API')
    plain.close()
    expect_error(oc, "INSERT INTO ka_owner.fire VALUES (1)", None, '42501', 'only the owner',
                 'ka_owner\'s own insert fires the trigger: acts for ka_owner')
    check(q1(conn, "SELECT count(*) FROM stream.delivery_streams WHERE delivery_stream_name = 'honest'") == 1,
          'the honest delivery stream still exists')
    q(oc, "DROP TABLE ka_owner.fire")


# ---------------------------------------------------------------- robustness

def t_robustness():
    say('redefining the destination mid-batch, odd partition keys, a self-flush: no crash, no hang')
    q(oc, """CREATE TABLE ka_owner.morphed (done bool);
             CREATE FUNCTION ka_owner.morph(v int) RETURNS bool LANGUAGE plpgsql AS $$
             BEGIN
                 IF NOT EXISTS (SELECT 1 FROM ka_owner.morphed) THEN
                     INSERT INTO ka_owner.morphed VALUES (true);
                     EXECUTE 'ALTER TABLE ka_owner.morph_sink ALTER COLUMN b TYPE text USING b::text';
                 END IF;
                 RETURN true;
             END $$;
             CREATE DOMAIN ka_owner.morph_int AS int CHECK (ka_owner.morph(VALUE))""")
    owned('morph_sink', "CREATE TABLE ka_owner.morph_sink (a ka_owner.morph_int, b int8)")
    put(oc, 'morph_sink', ['{"a": 1, "b": %d}' % (i * 1000003) for i in range(5)])
    flush('morph_sink', 10)
    rows = q(conn, "SELECT b FROM ka_owner.morph_sink")
    check(all(r[0] is None or r[0].isdigit() for r in rows), 'no garbage delivered after the redefinition: %r' % rows)

    # partition keys that are no JSON object (reached with a file destination only)
    q(conn, """CREATE FUNCTION public.odd_keys(records %s) RETURNS SETOF stream.firehose_result LANGUAGE sql AS $$
               SELECT r.record_id, 'Ok'::text, r.data,
                      (ARRAY['[1, 2, 3, 4, 5, 6, 7, 8]'::jsonb, '"k"', '7', '[]', '[{"k": "v"}]', 'null',
                             (SELECT jsonb_agg('k'::text) FROM generate_series(1, 20000))])
                      [1 + (row_number() OVER () - 1) %% 7]
                 FROM unnest(records) r $$""" % TF)
    q(conn, "SELECT stream.create_delivery_stream('odd_keys', destination => %s, "
            "prefix => 'k=!{partitionKeyFromLambda:k}/', error_output_prefix => 'err/!{firehose:error-output-type}/', "
            "transform_function => 'public.odd_keys(stream.firehose_record[])', buffer_interval_seconds => 900)",
            (LAKE + '/odd',))
    put(conn, 'odd_keys', ['{"n": %d}' % i for i in range(21)])
    check(flush('odd_keys') is True, 'odd partition keys: delivered')
    check(q1(conn, "SELECT records_failed FROM stream.delivery_progress JOIN stream.delivery_streams "
                   "USING (delivery_stream_id) WHERE delivery_stream_name = 'odd_keys'") == 21,
          'every record without an object of partition keys failed')

    # a transform that waits for its own delivery: the worker waits for itself until the limit
    q(oc, """CREATE FUNCTION ka_owner.self_flush(records %s) RETURNS SETOF stream.firehose_result
             LANGUAGE plpgsql AS $$ BEGIN PERFORM stream.flush_delivery_stream('self_sink', 60); %s END $$"""
      % (TF, OK_ROWS))
    owned('self_sink', "CREATE TABLE ka_owner.self_sink (n int)", transform='self_flush')
    put(oc, 'self_sink', ['{"n": 1}'])
    t0 = time.monotonic()
    flush('self_sink', 20)
    check(time.monotonic() - t0 < 10, 'the self-flushing transform held the worker %.1f s' % (time.monotonic() - t0))
    check(worker_pid() == pid0, 'the worker is the same process (pid %s, was %s)' % (worker_pid(), pid0))
    took = other_latency()
    check(took is not None and took < 4, 'the honest owner delivers at the end (%s s)' % took)


def t_output_cast():
    say('a cast to json that the JSON writer calls while writing a file catches the cancel: still cut off')
    # a file destination needs pg_write_server_files (so this runs last: ka_owner is then much more than an owner)
    q(conn, "GRANT pg_write_server_files TO ka_owner")
    q(oc, """CREATE TYPE ka_owner.mood AS ENUM ('fine', 'slow');
             CREATE FUNCTION ka_owner.mood_json(m ka_owner.mood) RETURNS json LANGUAGE plpgsql AS $$
             DECLARE t0 timestamptz := clock_timestamp();
             BEGIN
                 IF m = 'slow' THEN
                     WHILE clock_timestamp() < t0 + interval '12 seconds' LOOP
                         BEGIN PERFORM pg_sleep(1); EXCEPTION WHEN query_canceled THEN NULL; END;
                     END LOOP;
                     INSERT INTO ka_owner.log (place, note) VALUES ('cast', 'ran to its end');
                 END IF;
                 RETURN to_json(upper(m::text) || '!');
             END $$;
             CREATE CAST (ka_owner.mood AS json) WITH FUNCTION ka_owner.mood_json(ka_owner.mood);
             CREATE TYPE ka_owner.mood_row AS (n int, m ka_owner.mood)""")
    q(oc, "SELECT stream.create_delivery_stream('cast_files', destination => %s, format => 'json', "
          "schema => 'ka_owner.mood_row', buffer_interval_seconds => 900)", (LAKE + '/cast',))
    put(oc, 'cast_files', ['{"n": 1, "m": "fine"}'])
    check(flush('cast_files') is True, 'delivered')
    written = ''.join(open(f).read() for f in delivered_files(LAKE + '/cast'))
    check('"FINE!"' in written, 'the JSON writer called the owner\'s cast: %r' % written)
    put(oc, 'cast_files', ['{"n": 2, "m": "slow"}'])
    flush('cast_files', 0)
    time.sleep(0.3)
    took = other_latency()
    check(took is not None and took < 5, 'the honest owner waited %s s while the cast looped' % took)
    wait_for(lambda: 'owner_code_timeout' in (last_error('cast_files') or ''), 20,
             'the looping cast fails the batch with the time limit')
    check(notes('cast') == [], 'the cast ran to its end')
    check(worker_pid() == pid0, 'the worker is the same process')

try:
    setup()
    run_subtests([(n, f, ()) for n, f in [
        ('caught_cancel', t_caught_cancel),
        ('multiplied_limit', t_multiplied_limit),
        ('destination_lock', t_destination_lock),
        ('session_state', t_session_state),
        ('catalog_rows', t_catalog_rows),
        ('caller_tracking', t_caller_tracking),
        ('robustness', t_robustness),
        ('output_cast', t_output_cast),
    ]])
finally:
    try:
        q(conn, "ALTER SYSTEM RESET stream.owner_code_timeout")
        q(conn, "SELECT pg_reload_conf()")
    except Exception as e:  # noqa: BLE001
        warn('could not reset stream.owner_code_timeout: %s' % e)
    conn.close()
    for c in ('oc', 'other'):
        if c in globals():
            globals()[c].close()
    drop_db(roles=ROLES, on_error=warn)
    if os.path.isdir(LAKE):
        import shutil
        shutil.rmtree(LAKE, ignore_errors=True)
finish()
