"""Helpers shared by the Python test scripts in test/scripts/.

Not a test itself: scripts/test.sh runs only the executable files directly in
test/scripts/, and this module lives outside that directory.  A script uses it
with

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
    import streamtest as st          # or: from streamtest import ...
    st.configure(DB, statement_timeout='30s')

Connection parameters come from PGHOST/PGPORT/PGUSER (scripts/env.sh), read
by libpq.  The crash loops in test/t/*.py run on the throw-away node of
their TAP test instead (require_tap_node; start_cluster and crash then act
on that node).  Output style: progress lines "[<script> <seconds>s] message",
failures "FAIL: message", and a last line "<script>: OK (<seconds>s)" or
"<script>: FAILED (<n> failure(s), <seconds>s)"; exit status 0 = pass,
1 = failure.

Files written by the delivery tests are read back with Python's own modules
and with DuckDB (test/readers/duckdb_query.mjs), never with the extension's
code.
"""

import glob
import json
import os
import pwd
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import signal

import psycopg2

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
NAME = os.path.splitext(os.path.basename(sys.argv[0]))[0]
T0 = time.monotonic()
MAX_PRINTED = 60            # failures printed; the rest are only counted
KEEP_DB = os.environ.get('STREAM_TEST_KEEP_DB') == '1'

failures = []
_failures_lock = threading.Lock()
_config = {'db': None, 'settings': {}}


def configure(db, **settings):
    """Set the test database (also the application_name of every connection)
    and the GUCs every connection sets, e.g. statement_timeout='30s'."""
    _config['db'] = db
    _config['settings'] = settings


# ---------------------------------------------------------------- reporting

def elapsed():
    return time.monotonic() - T0


def log(msg):
    print(f'[{NAME} {elapsed():6.2f}s] {msg}', flush=True)


def fail(msg):
    with _failures_lock:
        failures.append(msg)
        n = len(failures)
    if n <= MAX_PRINTED:
        print(f'FAIL: {msg}', flush=True)
    elif n == MAX_PRINTED + 1:
        print('FAIL: (more failures not printed)', flush=True)


def check(cond, msg):
    if not cond:
        fail(msg)
    return cond


def warn(msg):
    print(f'warning: {msg}', flush=True)


def finish():
    """Print the summary line and exit: 0 without failures, else 1."""
    if failures:
        print(f'{NAME}: FAILED ({len(failures)} failure(s), {elapsed():.1f}s)', flush=True)
        sys.exit(1)
    print(f'{NAME}: OK ({elapsed():.1f}s)', flush=True)
    sys.exit(0)


def run_subtests(tests):
    """Run (name, function, args) in order; an exception fails that sub-test only."""
    for name, fn, args in tests:
        t = time.monotonic()
        n = len(failures)
        try:
            fn(*args)
        except Exception:  # noqa: BLE001
            fail(f'{name}: exception\n{traceback.format_exc()}')
        log(f'{name}: {"ok" if len(failures) == n else "FAILED"} ({time.monotonic() - t:.1f} s)')


def main_wrapper(main, cleanup):
    """Run main(); an unexpected exception is a failure; cleanup() always runs
    (unless STREAM_TEST_KEEP_DB=1); then finish()."""
    try:
        main()
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001
        fail(f'unexpected error: {e!r}\n{traceback.format_exc()}')
    finally:
        if not KEEP_DB:
            cleanup()
    finish()


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    check(False, 'timed out after %ss waiting for %s' % (timeout, what))
    return None


# ---------------------------------------------------------------- SQL

def connect(dbname=None, user=None, retries=1):
    """An autocommit connection to dbname (default: the test database)."""
    kw = {'user': user} if user else {}
    for i in range(retries):
        try:
            conn = psycopg2.connect(dbname=dbname or _config['db'], connect_timeout=10,
                                    application_name=_config['db'] or NAME, **kw)
            break
        except psycopg2.OperationalError:
            if i == retries - 1:
                raise
            time.sleep(0.5)
    conn.autocommit = True
    with conn.cursor() as cur:
        for name, value in _config['settings'].items():
            cur.execute(f"SET {name} = '{value}'")
    return conn


def connect_when_up(timeout=120):
    """A working connection once the server has recovered (after a backend's
    SIGKILL the postmaster first ends every session, then recovers)."""
    end = time.monotonic() + timeout
    while True:
        try:
            c = connect(retries=1)
            q(c, 'SELECT 1')
            return c
        except psycopg2.Error:
            if time.monotonic() > end:
                raise
            time.sleep(0.3)


def reconnecting_loop(stop, step):
    """Call step(conn) until the event stop is set, with a new connection
    after every error (a crash test's producer: the server went away, and
    whatever was in flight is uncertain or rolled back)."""
    conn = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = connect(retries=1)
            step(conn)
        except psycopg2.Error:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
            conn = None
            time.sleep(0.2)


def q(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall() if cur.description else None


def q1(conn, sql, args=None):
    rows = q(conn, sql, args)
    return rows[0][0] if rows else None


def expect_error(conn, sql, args, sqlstate, text, what):
    """Run sql expecting an error with that SQLSTATE whose message contains text."""
    try:
        q(conn, sql, args)
    except psycopg2.Error as e:
        check(e.pgcode == sqlstate and text in (e.pgerror or ''),
              f'{what}: expected SQLSTATE {sqlstate} with "{text}", got {e.pgcode}: {(e.pgerror or "").strip()}')
        return e
    fail(f'{what}: expected an error {sqlstate} ({text}), but it succeeded')
    return None


def expect_error_mentioning(conn, sql, args, fragment, label):
    """Run sql expecting an error whose text mentions fragment."""
    try:
        q(conn, sql, args)
    except psycopg2.Error as e:
        return check(fragment in str(e), '%s: error %r does not mention %r' % (label, str(e).strip(), fragment))
    return check(False, '%s: no error (expected %r)' % (label, fragment))


def create_db(db=None, roles=(), extension=False):
    """Drop db (and the roles) if they exist, create db again.  Returns an open
    connection to postgres, or with extension=True one to db with the stream
    extension created."""
    db = db or _config['db']
    admin = connect('postgres')
    q(admin, 'SET client_min_messages = warning')
    q(admin, f'DROP DATABASE IF EXISTS {db} WITH (FORCE)')
    for role in roles:
        q(admin, f'DROP ROLE IF EXISTS {role}')
    q(admin, f'CREATE DATABASE {db}')
    if not extension:
        return admin
    admin.close()
    conn = connect(db)
    q(conn, 'CREATE EXTENSION stream')
    return conn


def drop_db(db=None, roles=(), admin=None, on_error=None):
    """Drop db and the roles (through admin if given, which is then closed).
    An error is a test failure unless on_error says otherwise (e.g. warn)."""
    db = db or _config['db']
    try:
        if admin is None:
            admin = connect('postgres')
        q(admin, 'SET client_min_messages = warning')
        q(admin, f'DROP DATABASE IF EXISTS {db} WITH (FORCE)')
        for role in roles:
            q(admin, f'DROP ROLE IF EXISTS {role}')
        admin.close()
    except Exception as e:  # noqa: BLE001
        (on_error or fail)(f'could not drop database {db}: {e}')


# ---------------------------------------------------------------- streams

def shard_id(i):
    return f'shardId-{i:012d}'


def get_records_sql(columns):
    """get_records(iterator, limit) one row per record (g: the call, r: the record)."""
    return ('SELECT ' + columns + ' '
            'FROM stream.get_records(%s, %s) AS g '
            'LEFT JOIN LATERAL unnest(g.records) WITH ORDINALITY '
            '     AS r(sequence_number, approximate_arrival_timestamp, partition_key, data, ord) ON true '
            'ORDER BY r.ord')


# ---------------------------------------------------------------- files

def workdir(tag):
    """A directory the server (OS user postgres) can write into."""
    d = tempfile.mkdtemp(prefix='stream_%s.' % tag)
    os.chmod(d, 0o755)
    if os.getuid() == 0:
        pw = pwd.getpwnam('postgres')
        os.chown(d, pw.pw_uid, pw.pw_gid)
    return d


def delivered_files(root, pattern='**/*'):
    """Published files below root (the staging directory is not delivery output)."""
    out = []
    for p in glob.glob(os.path.join(root, pattern), recursive=True):
        if os.path.isfile(p) and '/.firehose-staging/' not in p:
            out.append(p)
    return sorted(out)


def duckdb(sql):
    """Rows (dicts) of a DuckDB query, through test/readers/duckdb_query.mjs."""
    if not os.path.isdir(os.path.join(ROOT, 'node_modules', '@duckdb', 'node-api')):
        subprocess.run(['npm', 'ci', '--no-audit', '--no-fund'], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
    r = subprocess.run(['node', os.path.join(ROOT, 'test', 'readers', 'duckdb_query.mjs'), sql],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError('duckdb failed: %s' % r.stderr.strip())
    return json.loads(r.stdout)


# ---------------------------------------------------------------- crashes

def postmaster_pid():
    try:
        with open(os.path.join(os.environ['STREAM_PGDATA'], 'postmaster.pid')) as f:
            return int(f.readline().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def on_tap_node():
    """True when a TAP test of test/t/ runs this script against a throw-away
    node of its own (test/lib/StreamNode.pm run_python sets STREAM_TAP_NODE=1
    and the node's STREAM_PGDATA, PGHOST, PGPORT, STREAM_PGLOG, PG_BIN)."""
    return os.environ.get('STREAM_TAP_NODE') == '1'


def require_tap_node():
    """A crash loop runs only on a TAP test's node: exit otherwise, so that it
    cannot kill a cluster that others use."""
    if not on_tap_node():
        print('%s: run it through its TAP test (make prove_installcheck PROVE_TESTS=test/t/...pl), '
              'which gives it a throw-away node' % NAME, flush=True)
        sys.exit(2)


def _start_tap_node():
    """Start the TAP test's node with pg_ctl (its settings are in its data
    directory; scripts/cluster.sh would rewrite them), logging where the test
    reads.  Retries as scripts/cluster.sh does: after a SIGKILL of the
    postmaster a child may hold the old shared memory for a moment."""
    pg_ctl = os.path.join(os.environ['PG_BIN'], 'pg_ctl')
    pg_isready = [os.path.join(os.environ['PG_BIN'], 'pg_isready'), '-q', '-h', os.environ['PGHOST'],
                  '-p', os.environ['PGPORT'], '-U', 'postgres', '-d', 'postgres']
    pgdata = os.environ['STREAM_PGDATA']
    for _ in range(15):
        if subprocess.run([pg_ctl, '-D', pgdata, 'status'], capture_output=True).returncode == 0:
            # running (perhaps still in crash recovery): wait until it accepts connections
            end = time.monotonic() + 120
            while subprocess.run(pg_isready).returncode != 0:
                if time.monotonic() > end:
                    raise RuntimeError('the node runs but does not accept connections')
                time.sleep(0.5)
            return
        r = subprocess.run([pg_ctl, '-D', pgdata, '-l', os.environ['STREAM_PGLOG'], '-w', '-t', '120', 'start'],
                           capture_output=True, text=True, timeout=300, cwd='/')
        if r.returncode == 0:
            return
        log('start of the node failed, retrying: %s' % (r.stdout + r.stderr).strip())
        time.sleep(2)
    raise RuntimeError('could not start the node')


def start_cluster():
    """Start the server if it is down: the checkout's cluster with
    scripts/cluster.sh, a TAP test's node with pg_ctl."""
    if on_tap_node():
        _start_tap_node()
        return
    r = subprocess.run(['bash', os.path.join(ROOT, 'scripts', 'cluster.sh'), 'start'],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        raise RuntimeError('could not start the cluster')


def _kill_child(child):
    """SIGKILL a child of the postmaster; let the postmaster notice and end
    every session before anyone reconnects.  False if it had already gone."""
    try:
        os.kill(child, signal.SIGKILL)
    except ProcessLookupError:
        return False
    end = time.time() + 30
    while pid_alive(child) and time.time() < end:
        time.sleep(0.05)
    time.sleep(1.0)
    return True


def crash(how='kill', child=None):
    """Crash the cluster and start it again.  how: 'kill' (SIGKILL of the
    postmaster), 'immediate' (pg_ctl stop -m immediate), 'backend' (SIGKILL
    of one client backend: the postmaster then resets shared memory and runs
    crash recovery itself) or 'worker' (SIGKILL of the process child, a stream
    worker's pid from pg_stat_activity; the postmaster resets as for a
    backend; without child, as 'kill')."""
    pgdata = os.environ['STREAM_PGDATA']
    pid = postmaster_pid()
    if how == 'worker':
        if child and pid_alive(child):
            _kill_child(child)
            return
        how = 'kill'
    if how == 'immediate':
        pg_ctl = [os.path.join(os.environ['PG_BIN'], 'pg_ctl'), '-D', pgdata, 'stop', '-m', 'immediate', '-w']
        subprocess.run((['runuser', '-u', 'postgres', '--'] if os.getuid() == 0 else []) + pg_ctl,
                       capture_output=True, timeout=120, cwd='/')
    elif how == 'backend' and pid:
        r = subprocess.run(['pgrep', '-P', str(pid), '-f', 'postgres: .*(idle|SELECT|COMMIT|BEGIN|INSERT)'],
                           capture_output=True, text=True)
        # a session may have ended since pgrep saw it: take the next one
        if not any(_kill_child(int(x)) for x in r.stdout.split()):
            os.kill(pid, signal.SIGKILL)
            how = 'kill'
    elif pid:
        os.kill(pid, signal.SIGKILL)
    if how == 'kill' and pid:
        end = time.time() + 30
        while pid_alive(pid) and time.time() < end:
            time.sleep(0.05)
        # children notice the postmaster's death and leave
        time.sleep(0.5)
    if how != 'backend':
        start_cluster()
