#!/usr/bin/python3
"""A delivery stream's owner attacks the stream worker through the code it runs.

The worker is one superuser session serving every stream of the database.
A delivery stream owner (`sb_owner`: LOGIN, EXECUTE on create_delivery_stream,
its own schema; no superuser, no pg_write_server_files) writes the code the
worker runs for it, in every place the worker runs owner code:

* the transform function, a BEFORE trigger, a domain CHECK, a column DEFAULT,
  an index expression and a deferred constraint trigger on its destination;
* each sets search_path (to its own schema, where it defined `=` for int4 to
  run ALTER ROLE sb_owner SUPERUSER) and default_transaction_read_only with
  set_config(..., false), and logs the settings it found on entry;
* the transform and a trigger call the control plane (create_delivery_stream
  from a stream the owner may not read, delete_delivery_stream of another
  owner's, grant_stream_access) from inside the worker.

Afterwards sb_owner is no superuser, every entry in the log shows the worker's
pinned settings (nothing leaked from a previous call), the deferred trigger
ran as sb_owner (not as the superuser at the worker's commit), the control
plane refused, and another owner's delivery and stream maintenance went on.

Then stream.owner_code_timeout: a transform and a trigger that sleep are
cancelled, the transform's records go to the error rows as the Lambda
contract says, the trigger's batch is retried with back-off, and the other
owner's delivery keeps its pace meanwhile.

Also from a session: SET ROLE from a superuser session does not make the
caller a superuser (the recorded owner and the privilege checks use the role
that called), and stream_internal functions cannot be executed directly.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import check, configure, connect, create_db, drop_db, expect_error, finish  # noqa: E402
from streamtest import q, q1, run_subtests, wait_for, warn  # noqa: E402
from streamtest import log as say  # noqa: E402

DB = 'stream_owner_sandbox'
ROLES = ('sb_owner', 'sb_other')
configure(DB, statement_timeout='120s', client_min_messages='warning')
conn = create_db(roles=ROLES, extension=True)

CREATE_DS = ("stream.create_delivery_stream(text, text, text, regclass, text, regtype, text, int, int, "
             "text, text, jsonb, regprocedure, text, text)")


def flush(name, c=None, timeout=60):
    return q1(c or conn, "SELECT stream.flush_delivery_stream(%s, %s)", (name, timeout))


def setup():
    q(conn, "CREATE ROLE sb_owner LOGIN; CREATE ROLE sb_other LOGIN")
    q(conn, "CREATE SCHEMA sb_owner AUTHORIZATION sb_owner; CREATE SCHEMA sb_other AUTHORIZATION sb_other")
    q(conn, f"GRANT EXECUTE ON FUNCTION {CREATE_DS}, stream.delete_delivery_stream(text) TO sb_owner, sb_other")
    q(conn, "GRANT EXECUTE ON FUNCTION stream.grant_stream_access(text, regrole, text) TO sb_owner")
    q(conn, "SELECT stream.create_stream('secret', 1)")
    q(conn, "SELECT stream.put_record('secret', 'k', convert_to('{\"n\": 42, \"ssn\": \"123-45-6789\"}', 'UTF8'))")
    q(conn, "SELECT stream.create_stream('busy', 2)")


# The owner's weapon: every piece of code logs what it found and then tries
# to change the worker's settings; `=` on int4 in its schema escalates when
# the superuser resolves it through that search_path.
WEAPON = r"""
CREATE TABLE sb_owner.log (at timestamptz DEFAULT clock_timestamp(), place text, search_path text,
                           read_only text, who text, note text, first_in_call bool);
CREATE FUNCTION sb_owner.escalate(a int4, b int4) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        EXECUTE 'ALTER ROLE sb_owner SUPERUSER';
        INSERT INTO sb_owner.log (place, who, note) VALUES ('operator', current_user, 'escalated');
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RETURN a OPERATOR(pg_catalog.=) b;
END $$;
CREATE OPERATOR sb_owner.= (LEFTARG = int4, RIGHTARG = int4, FUNCTION = sb_owner.escalate);
CREATE FUNCTION sb_owner.poison(place text) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN
    -- sb.mark is set by the first poison() of a call: settings of one call last for that call
    INSERT INTO sb_owner.log (place, search_path, read_only, who, first_in_call)
    VALUES (place, current_setting('search_path'), current_setting('default_transaction_read_only'), current_user,
            coalesce(current_setting('sb.mark', true), '') = '');
    PERFORM set_config('sb.mark', 'set', false);
    PERFORM set_config('search_path', 'sb_owner, pg_catalog', false);
    PERFORM set_config('default_transaction_read_only', 'on', false);
    PERFORM set_config('statement_timeout', '1', false);
    RETURN true;
END $$;
CREATE FUNCTION sb_owner.control_plane(place text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        PERFORM stream.create_delivery_stream('stolen_' || place, source_stream_name => 'secret',
                                              destination_table => 'sb_owner.loot', starting_position => 'TRIM_HORIZON');
        INSERT INTO sb_owner.log (place, who, note) VALUES (place, current_user, 'create_delivery_stream succeeded');
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO sb_owner.log (place, who, note) VALUES (place, current_user, 'refused: ' || SQLERRM);
    END;
    BEGIN
        PERFORM stream.delete_delivery_stream('other_ds');
        INSERT INTO sb_owner.log (place, who, note) VALUES (place, current_user, 'delete_delivery_stream succeeded');
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO sb_owner.log (place, who, note) VALUES (place, current_user, 'refused: ' || SQLERRM);
    END;
    BEGIN
        PERFORM stream.grant_stream_access('secret', 'sb_owner', 'read');
        INSERT INTO sb_owner.log (place, who, note) VALUES (place, current_user, 'grant_stream_access succeeded');
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO sb_owner.log (place, who, note) VALUES (place, current_user, 'refused: ' || SQLERRM);
    END;
END $$;
CREATE TABLE sb_owner.loot (n int, ssn text);
CREATE DOMAIN sb_owner.checked_int AS int CHECK (sb_owner.poison('domain check'));
CREATE FUNCTION sb_owner.dflt() RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM sb_owner.poison('default'); RETURN 'd'; END $$;
CREATE FUNCTION sb_owner.idx(n int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM sb_owner.poison('index expression'); RETURN n; END $$;
CREATE TABLE sb_owner.sink (n sb_owner.checked_int, s text, d text DEFAULT sb_owner.dflt());
CREATE INDEX ON sb_owner.sink (sb_owner.idx(n));
CREATE FUNCTION sb_owner.before_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sb_owner.poison('trigger');
    IF NEW.s = 'control' THEN PERFORM sb_owner.control_plane('trigger'); END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER before_trg BEFORE INSERT ON sb_owner.sink FOR EACH ROW EXECUTE FUNCTION sb_owner.before_trg();
CREATE FUNCTION sb_owner.deferred_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sb_owner.poison('deferred trigger');
    BEGIN
        EXECUTE 'ALTER ROLE sb_owner SUPERUSER';
        INSERT INTO sb_owner.log (place, who, note) VALUES ('deferred trigger', current_user, 'escalated');
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER deferred_trg AFTER INSERT ON sb_owner.sink DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION sb_owner.deferred_trg();
CREATE FUNCTION sb_owner.tf(records stream.firehose_record[]) RETURNS SETOF stream.firehose_result
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sb_owner.poison('transform');
    IF EXISTS (SELECT 1 FROM unnest(records) r WHERE convert_from(r.data, 'UTF8') LIKE '%control%') THEN
        PERFORM sb_owner.control_plane('transform');
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(records) r WHERE convert_from(r.data, 'UTF8') LIKE '%sleep%') THEN
        PERFORM pg_sleep(30);
    END IF;
    RETURN QUERY SELECT r.record_id, 'Ok'::text, r.data, NULL::jsonb FROM unnest(records) r;
END $$;
"""


def t_escalation():
    say('owner code in the transform, a trigger, a domain check, a default, an index expression '
        'and a deferred trigger tries to change the worker\'s settings and become superuser')
    oc = connect(user='sb_owner')
    q(oc, WEAPON)
    q(oc, "SELECT stream.create_delivery_stream('owned', destination_table => 'sb_owner.sink', "
          "transform_function => 'sb_owner.tf(stream.firehose_record[])', buffer_interval_seconds => 900)")
    other = connect(user='sb_other')
    q(other, "CREATE TABLE sb_other.sink (n int)")
    q(other, "SELECT stream.create_delivery_stream('other_ds', destination_table => 'sb_other.sink', "
             "buffer_interval_seconds => 900)")
    for rnd in range(4):
        recs = ['{"n": %d, "s": "%s"}' % (rnd * 10 + i, 'control' if (rnd == 1 and i == 0) else 'x') for i in range(5)]
        for r in recs:
            q(oc, "SELECT stream.put_delivery_record('owned', convert_to(%s, 'UTF8'))", (r,))
        check(flush('owned') is True, 'round %d: owned delivered' % rnd)
        q(other, "SELECT stream.put_delivery_record('other_ds', convert_to('{\"n\": %s}', 'UTF8'))", (rnd,))
        check(flush('other_ds') is True, 'round %d: the other owner\'s delivery goes on' % rnd)
        # maintenance of streams still works (a read-only worker could not)
        check(q1(conn, "SELECT count(*) FROM stream.run_maintenance()") is not None, 'maintenance runs')
    check(q1(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = 'sb_owner'") is False,
          'sb_owner did not become superuser')
    rows = q(conn, "SELECT place, search_path, read_only, who, first_in_call FROM sb_owner.log "
                   "WHERE note IS NULL ORDER BY at")
    places = {r[0] for r in rows}
    for p in ('transform', 'trigger', 'domain check', 'default', 'index expression', 'deferred trigger'):
        check(p in places, 'owner code ran in the %s' % p)
    firsts = [r for r in rows if r[4]]
    # 4 rounds, each: a transform call, the conversions, the insert (with its deferred trigger)
    check(len(firsts) >= 12, 'every call began with fresh settings (%d calls seen of at least 12; '
          'settings of one call leaked into the next)' % len(firsts))
    for place, sp, ro, who, first in rows:
        if first:
            check(sp == 'pg_catalog, pg_temp' and ro == 'off',
                  '%s found the worker\'s settings changed: search_path=%r read_only=%r' % (place, sp, ro))
        check(who == 'sb_owner', '%s ran as %s, not as the owner' % (place, who))
    check(q1(conn, "SELECT count(*) FROM sb_owner.log WHERE note = 'escalated'") == 0, 'no escalation logged')
    notes = q(conn, "SELECT place, note FROM sb_owner.log WHERE note IS NOT NULL AND note <> 'escalated' ORDER BY at")
    check(len(notes) == 6, 'the transform and the trigger each tried the control plane 3 times: %r' % notes)
    for place, note in notes:
        check(note.startswith('refused: ') and 'cannot be called from code that the stream worker runs' in note,
              'control plane from the %s: %s' % (place, note))
    check(q1(conn, "SELECT count(*) FROM stream.delivery_streams WHERE delivery_stream_name LIKE 'stolen%%'") == 0,
          'no delivery stream was created from inside the worker')
    check(q1(conn, "SELECT count(*) FROM sb_owner.loot") == 0, 'nothing of stream secret reached the owner')
    check(q1(conn, "SELECT count(*) FROM stream.delivery_streams WHERE delivery_stream_name = 'other_ds'") == 1,
          'the other owner\'s delivery stream still exists')
    check(q1(conn, "SELECT count(*) FROM sb_other.sink") == 4, 'the other owner got its 4 rows')
    check(q1(conn, "SELECT has_table_privilege('sb_owner', 'stream_data.s' || (SELECT stream_id FROM stream.streams "
                   "WHERE stream_name = 'secret'), 'SELECT')") is False, 'no read grant on secret')
    check(q1(conn, "SELECT count(*) FROM sb_owner.sink") == 20, 'all 20 rows delivered to the owner\'s table')
    oc.close()
    other.close()


def t_caller_is_current_user():
    say('SET ROLE in a superuser session: the caller is the current user, not the session user')
    sc = connect()
    q(sc, "SET ROLE sb_owner")
    expect_error(sc, "SELECT stream.create_delivery_stream('via_set_role', source_stream_name => 'secret', "
                     "destination_table => 'sb_owner.loot')", None, '42501', 'not authorized to read',
                 'a delivery stream from a stream the current user may not read')
    q(sc, "CREATE TABLE sb_owner.mine (n int)")
    q(sc, "SELECT stream.create_delivery_stream('via_set_role', destination_table => 'sb_owner.mine')")
    check(q1(conn, "SELECT p.owner::regrole::text FROM stream.delivery_streams d JOIN stream.processors p "
                   "ON p.processor_id = d.delivery_stream_id WHERE d.delivery_stream_name = 'via_set_role'") == 'sb_owner',
          'the delivery stream is owned by the role that called, not by the session\'s superuser')
    expect_error(sc, "SELECT stream.delete_delivery_stream('other_ds')", None, '42501', 'AccessDeniedException',
                 'deleting another owner\'s delivery stream under SET ROLE')
    q(sc, "RESET ROLE")
    # a SECURITY DEFINER function of sb_owner, called by the superuser, acts as sb_owner
    oc = connect(user='sb_owner')
    q(oc, "CREATE FUNCTION sb_owner.make(n text) RETURNS text LANGUAGE sql SECURITY DEFINER "
          "SET search_path = pg_catalog AS $$ SELECT stream.create_delivery_stream(n, source_stream_name => 'secret', "
          "destination_table => 'sb_owner.loot') $$")
    expect_error(sc, "SELECT sb_owner.make('via_definer')", None, '42501', 'not authorized to read',
                 'a SECURITY DEFINER function of sb_owner run by the superuser')
    for fn in ("stream_internal.create_delivery_stream('x', NULL, NULL, 'sb_owner.mine', 'json', NULL, 'none', 5, 300, "
               "NULL, NULL, NULL, NULL, NULL, 'LATEST')",
               "stream_internal.delete_delivery_stream('other_ds')",
               "stream_internal._caller()"):
        expect_error(oc, "SELECT " + fn, None, '42501', 'permission denied', 'direct call of ' + fn.split('(')[0])
    # the status view's helper runs as its reader: another owner's buffer shows no row
    other_id = q1(conn, "SELECT delivery_stream_id FROM stream.delivery_streams WHERE delivery_stream_name = 'other_ds'")
    check(q1(oc, "SELECT count(*) FROM stream_internal._delivery_buffer(%s)", (other_id,)) == 0,
          'sb_owner reads the buffer of sb_other\'s delivery stream')
    sc.close()
    oc.close()


def t_time_limit():
    say('stream.owner_code_timeout cancels a sleeping transform and a sleeping trigger')
    q(conn, "ALTER SYSTEM SET stream.owner_code_timeout = '700ms'")
    q(conn, "SELECT pg_reload_conf()")
    time.sleep(1.0)
    oc = connect(user='sb_owner')
    other = connect(user='sb_other')
    before_other = q1(conn, "SELECT count(*) FROM sb_other.sink")
    q(oc, "SELECT stream.put_delivery_record('owned', convert_to('{\"n\": 1, \"s\": \"sleep\"}', 'UTF8'))")
    t0 = time.monotonic()
    check(flush('owned', timeout=60) is True, 'the sleeping transform\'s batch completes')
    took = time.monotonic() - t0
    check(took < 20, 'the transform was cut off (%.1f s, not 4 x 30 s)' % took)
    err = q(conn, "SELECT envelope FROM stream.processor_errors e JOIN stream.delivery_streams d ON d.delivery_stream_id = e.processor_id "
                  "WHERE d.delivery_stream_name = 'owned'")
    check(len(err) == 1 and 'owner_code_timeout' in str(err[0][0]) and 'processing-failed' in str(err[0][0]).lower()
          or len(err) == 1 and 'owner_code_timeout' in str(err[0][0]),
          'the record of the timed-out transform is in the error rows: %r' % err)
    # a trigger that sleeps: the batch fails with back-off, the other owner goes on
    q(oc, "CREATE OR REPLACE FUNCTION sb_owner.before_trg() RETURNS trigger LANGUAGE plpgsql AS $$ "
          "BEGIN IF NEW.s = 'nap' THEN PERFORM pg_sleep(30); END IF; RETURN NEW; END $$")
    q(oc, "SELECT stream.put_delivery_record('owned', convert_to('{\"n\": 2, \"s\": \"nap\"}', 'UTF8'))")
    q(oc, "SELECT stream.flush_delivery_stream('owned', 0)")
    t0 = time.monotonic()
    for i in range(3):
        q(other, "SELECT stream.put_delivery_record('other_ds', convert_to('{\"n\": %s}', 'UTF8'))", (100 + i,))
        check(flush('other_ds', other, timeout=30) is True, 'the other owner delivers while the trigger sleeps (%d)' % i)
    check(time.monotonic() - t0 < 25, 'three flushes of the other owner took %.1f s' % (time.monotonic() - t0))
    check(q1(conn, "SELECT count(*) FROM sb_other.sink") == before_other + 3, 'the other owner got its rows')
    wait_for(lambda: q1(conn, "SELECT last_error FROM stream.processor_progress p JOIN stream.delivery_streams d "
                              "ON d.delivery_stream_id = p.processor_id WHERE d.delivery_stream_name = 'owned' "
                              "AND last_error LIKE '%%owner_code_timeout%%'"), 20,
             'the sleeping trigger\'s batch fails with the time limit in last_error')
    q(conn, "ALTER SYSTEM RESET stream.owner_code_timeout")
    q(conn, "SELECT pg_reload_conf()")
    oc.close()
    other.close()


try:
    setup()
    run_subtests([(n, f, ()) for n, f in [
        ('escalation', t_escalation),
        ('caller_is_current_user', t_caller_is_current_user),
        ('time_limit', t_time_limit),
    ]])
finally:
    q(conn, "ALTER SYSTEM RESET stream.owner_code_timeout")
    q(conn, "SELECT pg_reload_conf()")
    conn.close()
    drop_db(roles=ROLES, on_error=warn)
finish()
