"""Helpers shared by the delivery stream tests (test/scripts/60_delivery*.py).

Files are read back with Python's own json/csv/gzip modules and with DuckDB
(test/delivery/duckdb_query.mjs), never with the extension's code.
"""
import glob
import json
import os
import pwd
import subprocess
import sys
import tempfile
import time

import psycopg2

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
T0 = time.time()
FAILURES = []
NAME = os.path.basename(sys.argv[0])


def say(msg):
    print('[%s %3ds] %s' % (NAME, time.time() - T0, msg), flush=True)


def check(cond, msg):
    if cond:
        return True
    FAILURES.append(msg)
    print('FAIL: ' + msg, flush=True)
    return False


def dsn(db):
    return 'host=%s port=%s user=%s dbname=%s' % (
        os.environ['PGHOST'], os.environ['PGPORT'], os.environ.get('PGUSER', 'postgres'), db)


def connect(db, retries=1):
    for i in range(retries):
        try:
            c = psycopg2.connect(dsn(db), options='-c statement_timeout=120s -c client_min_messages=warning')
            c.autocommit = True
            return c
        except psycopg2.OperationalError:
            if i == retries - 1:
                raise
            time.sleep(0.5)


def q(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        if cur.description is None:
            return None
        return cur.fetchall()


def q1(conn, sql, params=None):
    rows = q(conn, sql, params)
    return rows[0][0] if rows else None


def expect_error(conn, sql, params, fragment, label):
    try:
        q(conn, sql, params)
    except psycopg2.Error as e:
        return check(fragment in str(e), '%s: error %r does not mention %r' % (label, str(e).strip(), fragment))
    return check(False, '%s: no error (expected %r)' % (label, fragment))


def wait_for(pred, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    check(False, 'timed out after %ss waiting for %s' % (timeout, what))
    return None


def fresh_db(db):
    admin = connect('postgres')
    q(admin, 'DROP DATABASE IF EXISTS %s WITH (FORCE)' % db)
    q(admin, 'CREATE DATABASE %s' % db)
    admin.close()
    conn = connect(db)
    q(conn, 'CREATE EXTENSION stream')
    return conn


def drop_db(db):
    try:
        admin = connect('postgres')
        q(admin, 'DROP DATABASE IF EXISTS %s WITH (FORCE)' % db)
        admin.close()
    except psycopg2.Error as e:
        print('warning: could not drop %s: %s' % (db, e))


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
    if not os.path.isdir(os.path.join(ROOT, 'node_modules', '@duckdb', 'node-api')):
        subprocess.run(['npm', 'ci', '--no-audit', '--no-fund'], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
    r = subprocess.run(['node', os.path.join(ROOT, 'test', 'delivery', 'duckdb_query.mjs'), sql],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError('duckdb failed: %s' % r.stderr.strip())
    return json.loads(r.stdout)


def finish():
    if FAILURES:
        print('%s: FAILED (%d failures, %ds)' % (NAME, len(FAILURES), time.time() - T0))
        sys.exit(1)
    print('%s: OK (%ds)' % (NAME, time.time() - T0))
    sys.exit(0)
