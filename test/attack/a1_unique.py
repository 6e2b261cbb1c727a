#!/usr/bin/python3
"""ATTACK: every sequence number ever returned by put_records (committed or
rolled back) is unique, across SIGKILLs of the postmaster and of single
backends, with stream.max_shards=16 eviction and many streams; readers with
iterators held across crashes never miss a committed record.

env: ROUNDS (default 6), STREAMS (default 40), WORKERS (default 4), MAXSHARDS (16)
"""
import os, sys, time, random, multiprocessing as mp, subprocess, signal
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
import streamtest as st
from streamtest import q, q1
import psycopg2

DB = 'stream_attack_unique'
st.configure(DB, statement_timeout='60s', client_min_messages='warning')
ROUNDS = int(os.environ.get('ROUNDS', 6))
STREAMS = int(os.environ.get('STREAMS', 40))
WORKERS = int(os.environ.get('WORKERS', 4))
MAXSHARDS = int(os.environ.get('MAXSHARDS', 16))
OUT = '/tmp/attack_unique'


def restart():
    subprocess.run(['bash', os.path.join(st.ROOT, 'scripts', 'cluster.sh'), 'restart'],
                   capture_output=True, text=True, timeout=300, check=True)


def worker(wid, stop):
    rnd = random.Random(wid * 7919 + int(time.time()))
    f = open(f'{OUT}/w{wid}.log', 'a', buffering=1)
    conn = None
    n = 0
    while not stop.is_set():
        try:
            if conn is None:
                conn = st.connect(retries=40)
                conn.autocommit = False
            s = 'hot' if rnd.random() < 0.5 else 's%d' % rnd.randrange(STREAMS)
            cnt = 500 if s == 'hot' else rnd.choice([1, 5, 500])
            tag = f'{wid}-{n}'
            n += 1
            cur = conn.cursor()
            keys = [f'{tag}-{i}' for i in range(cnt)]
            data = [b'x' * rnd.choice([0, 1, 127]) for _ in range(cnt)]
            if rnd.random() < 0.3:
                cur.execute('SAVEPOINT a')
            cur.execute('SELECT sequence_number, error_code, error_message FROM stream.put_records(%s, %s, %s::bytea[])',
                        (s, keys, [psycopg2.Binary(d) for d in data]))
            rows = cur.fetchall()
            for i, (seq, ec, em) in enumerate(rows):
                if ec is not None:
                    f.write(f'ERR {s} {ec} {em}\n')
                else:
                    f.write(f'SEQ {s} {seq} {keys[i]}\n')
            action = rnd.random()
            if action < 0.4:
                conn.rollback()
                f.write(f'ABORT {tag}\n')
            else:
                f.write(f'COMMITTING {tag}\n')
                conn.commit()
                f.write(f'COMMIT {tag}\n')
        except psycopg2.Error as e:
            msg = str(e).strip().replace('\n', ' | ')
            f.write(f'EXC {getattr(e, "pgcode", None)} {msg}\n')
            try:
                conn.close()
            except Exception:
                pass
            conn = None
            time.sleep(0.2)


def reader(rid, stop, stream):
    f = open(f'{OUT}/r{rid}.read', 'a', buffering=1)
    conn = None
    it = None
    last = None
    idle_after_stop = 0
    while True:
        try:
            if conn is None:
                conn = st.connect(retries=40)
            if it is None:
                if last is None:
                    it = q1(conn, "SELECT stream.get_shard_iterator(%s, 'shardId-000000000000', 'LATEST')", (stream,))
                    f.write(f'START {stream}\n')
                else:
                    it = q1(conn, "SELECT stream.get_shard_iterator(%s, 'shardId-000000000000', 'AFTER_SEQUENCE_NUMBER', %s)", (stream, last))
            rows = q(conn, st.get_records_sql('g.next_shard_iterator, r.sequence_number, r.partition_key'), (it, 10000))
            n = 0
            for nxt, seq, key in rows:
                it = nxt
                if key is not None:
                    f.write(f'R {seq} {key}\n')
                    last = seq
                    n += 1
            if n == 0:
                if stop.is_set():
                    idle_after_stop += 1
                    if idle_after_stop > 3:
                        return
                time.sleep(0.05)
        except psycopg2.Error as e:
            f.write(f'EXC {str(e).splitlines()[0]}\n')
            if 'Expired' in str(e):
                it = None
            try:
                conn.close()
            except Exception:
                pass
            conn = None
            time.sleep(0.2)


def main():
    os.makedirs(OUT, exist_ok=True)
    for x in os.listdir(OUT):
        os.unlink(os.path.join(OUT, x))
    admin = st.connect('postgres')
    q(admin, f'ALTER SYSTEM SET stream.max_shards = {MAXSHARDS}')
    admin.close()
    restart()
    conn = st.create_db(extension=True)
    q(conn, "SELECT stream.create_stream('hot', 1)")
    for i in range(STREAMS):
        q(conn, "SELECT stream.create_stream(%s, 1)", ('s%d' % i,))
    conn.close()
    stop = mp.Event()
    procs = [mp.Process(target=worker, args=(i, stop)) for i in range(WORKERS)]
    time.sleep(1)
    rstop = mp.Event()
    readers = [mp.Process(target=reader, args=(i, rstop, 'hot' if i == 0 else 's1')) for i in range(2)]
    for p in readers:
        p.start()
    time.sleep(1)
    for p in procs:
        p.start()
    for r in range(ROUNDS):
        time.sleep(random.uniform(2, 6))
        how = random.choice(['kill', 'backend', 'kill'])
        st.log(f'round {r}: crash {how}')
        st.crash(how)
        time.sleep(1)
    time.sleep(3)
    stop.set()
    for p in procs:
        p.join(60)
    rstop.set()
    for p in readers:
        p.join(120)
    # analysis
    seen = {}
    seen_stream = {}
    dups = 0
    errs = {}
    excs = {}
    committed = set()
    uncertain = set()
    pending = {}
    for fn in os.listdir(OUT):
        cur_tag_keys = []
        for line in open(os.path.join(OUT, fn)):
            parts = line.rstrip('\n').split(' ', 3)
            if parts[0] == 'SEQ':
                seq = parts[2]
                if seq in seen:
                    dups += 1
                    if dups < 20:
                        print('DUPLICATE', seq, seen[seq], parts[3])
                seen[seq] = parts[3]
                seen_stream[seq] = parts[1]
            elif parts[0] == 'ERR':
                errs[parts[2]] = errs.get(parts[2], 0) + 1
            elif parts[0] == 'EXC':
                k = ' '.join(parts[1:])[:90]
                excs[k] = excs.get(k, 0) + 1
            elif parts[0] == 'COMMIT':
                committed.add(parts[1])
            elif parts[0] == 'COMMITTING':
                uncertain.add(parts[1])
    # committed records must be in the table: check all via read_shard and strictly increasing
    conn = st.connect(retries=40)
    missing = 0
    nonmono = 0
    rows_total = 0
    stored = set()
    for s in ['hot'] + ['s%d' % i for i in range(STREAMS)]:
        rows = []
        last = None
        while True:
            if last is None:
                b = q(conn, "SELECT sequence_number, partition_key FROM stream.read_shard(%s, 'shardId-000000000000', 'TRIM_HORIZON', NULL, NULL, 10000)", (s,))
            else:
                b = q(conn, "SELECT sequence_number, partition_key FROM stream.read_shard(%s, 'shardId-000000000000', 'AFTER_SEQUENCE_NUMBER', %s, NULL, 10000)", (s, last))
            if not b:
                break
            rows += b
            last = b[-1][0]
        rows_total += len(rows)
        stored.update(k for _, k in rows)
        prev = None
        for seq, k in rows:
            if prev is not None and seq <= prev:
                nonmono += 1
            prev = seq
    for k in seen.values():
        t = k.rsplit('-', 1)[0]
        if t in committed and k not in stored:
            missing += 1
    st.check(missing == 0, f'committed records all stored ({missing} missing)')
    # readers: every committed record put after the readers started must be read
    for rid, stream in ((0, 'hot'), (1, 's1')):
        readk = set()
        for line in open(f'{OUT}/r{rid}.read'):
            if line.startswith('R '):
                readk.add(line.split(' ', 2)[2].rstrip('\n'))
        skipped = 0
        for seq, k in seen.items():
            t = k.rsplit('-', 1)[0]
            if t in committed and k in stored and k not in readk and seen_stream.get(seq) == stream:
                skipped += 1
        print(f'reader {rid} on {stream}: read {len(readk)}, skipped committed {skipped}')
        st.check(skipped == 0, f'reader {rid} skipped {skipped} committed records')
    print(f'numbers returned: {len(seen)}, duplicates: {dups}, records stored: {rows_total}')
    print('record errors:', errs)
    print('exceptions:', excs)
    st.check(dups == 0, 'no sequence number handed out twice')
    st.check(nonmono == 0, 'numbers strictly increase')
    admin = st.connect('postgres', retries=40)
    q(admin, 'ALTER SYSTEM RESET stream.max_shards')
    admin.close()
    restart()
    st.finish()


if __name__ == '__main__':
    main()
