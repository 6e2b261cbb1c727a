#!/usr/bin/env bash
# pg_dump / pg_restore round trip of a database using the stream extension.
#
# Creates streams with records (one created with a non-default retention, one whose
# retention was increased afterwards, one deleted stream), dumps the database with
# pg_dump -Fc, restores it into a new database with pg_restore, and checks:
#   * pg_dump and pg_restore succeed without errors;
#   * list_streams, list_shards, describe_stream and describe_stream_summary are equal;
#   * every record is readable with identical shard, sequence number, arrival
#     timestamp, partition key and data (read_shard, and get_shard_iterator +
#     get_records);
#   * new puts in the restored database get sequence numbers greater than the
#     old ones, per shard (and the source database keeps working the same way);
#   * run_maintenance() works in the restored database.
set -euo pipefail
export LC_ALL=C

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd "$HERE/../.." && pwd -P)"
# shellcheck source=scripts/env.sh
source "$ROOT/scripts/env.sh"

SRC=stream_dump_test
DST=stream_dump_restore
T0=$(date +%s)
WORK="$(mktemp -d /tmp/stream_dump_test.XXXXXX)"
FAILED=0

say()  { printf '[30_dump_restore %3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
fail() { printf 'FAIL: %s\n' "$*"; FAILED=1; }
die()  { printf 'FAIL: %s\n' "$*"; FAILED=1; exit 1; }

export PGOPTIONS="-c statement_timeout=60s -c client_min_messages=warning"
PSQL_OPTS=(-X -q -At -v ON_ERROR_STOP=1)
sqldb()  { local db=$1; shift; timeout 90 psql "${PSQL_OPTS[@]}" -d "$db" "$@"; }
sqladm() { sqldb postgres "$@"; }

cleanup() {
    local rc=$?
    if [ "${STREAM_TEST_KEEP_DB:-0}" != 1 ]; then
        sqladm -c "DROP DATABASE IF EXISTS $SRC WITH (FORCE)" >/dev/null 2>&1 || true
        sqladm -c "DROP DATABASE IF EXISTS $DST WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
    if [ "$rc" != 0 ] || [ "$FAILED" != 0 ]; then
        echo "30_dump_restore: FAILED ($(( $(date +%s) - T0 ))s)"
        exit 1
    fi
    echo "30_dump_restore: OK ($(( $(date +%s) - T0 ))s)"
    exit 0
}
trap cleanup EXIT

say "PGHOST=$PGHOST PGPORT=$PGPORT"
sqladm -c "DROP DATABASE IF EXISTS $SRC WITH (FORCE)" >/dev/null
sqladm -c "DROP DATABASE IF EXISTS $DST WITH (FORCE)" >/dev/null
sqladm -c "CREATE DATABASE $SRC" >/dev/null

# ---------------------------------------------------------------------------
say "creating streams and records in $SRC"
sqldb "$SRC" >/dev/null <<'SQL'
CREATE EXTENSION stream;
SELECT stream.create_stream('alpha', 2);
SELECT stream.create_stream('beta', 3, 48);
SELECT stream.create_stream('gamma', 1);
SELECT stream.increase_stream_retention_period('gamma', 72);
SELECT stream.create_stream('doomed', 2);
SELECT * FROM stream.put_record('doomed', 'x', '\x01'::bytea);
SELECT stream.delete_stream('doomed');

-- alpha: single puts, text-ish and binary data, including an empty record
SELECT count(*) FROM generate_series(1, 120) g,
    LATERAL stream.put_record('alpha', 'a-' || (g % 17),
        CASE WHEN g % 10 = 0 THEN ''::bytea
             WHEN g % 3 = 0 THEN decode(md5(g::text) || '00ff00', 'hex')
             ELSE convert_to('alpha record ' || g, 'UTF8') END) p;
-- beta: put_records batches, unicode partition keys, one large record
SELECT count(*) FROM generate_series(1, 4) b,
    LATERAL stream.put_records('beta',
        (SELECT array_agg('ключ-' || b || '-' || i ORDER BY i) FROM generate_series(1, 50) i),
        (SELECT array_agg(convert_to('beta ' || b || '/' || i, 'UTF8') ORDER BY i) FROM generate_series(1, 50) i)) p;
SELECT * FROM stream.put_record('beta', 'big', convert_to(repeat('0123456789abcdef', 16384), 'UTF8'));
-- gamma: explicit hash keys, in a transaction with a rolled-back savepoint
BEGIN;
SELECT count(*) FROM generate_series(1, 30) g,
    LATERAL stream.put_record('gamma', 'g' || g, convert_to('gamma ' || g, 'UTF8'), (g * 1000)::text) p;
SAVEPOINT s;
SELECT * FROM stream.put_record('gamma', 'gone', convert_to('rolled back', 'UTF8'));
ROLLBACK TO SAVEPOINT s;
SELECT * FROM stream.put_record('gamma', 'last', convert_to('gamma last', 'UTF8'));
COMMIT;
SQL

# full description of the database's streams and records, comparable with diff
snapshot() {   # $1 = database, $2 = output file
    sqldb "$1" >"$2" <<'SQL'
\echo == list_streams
SELECT * FROM stream.list_streams() ORDER BY stream_name;
\echo == list_shards
SELECT s.stream_name, sh.*
FROM stream.list_streams() s, LATERAL stream.list_shards(s.stream_name) sh
ORDER BY 1, 2;
\echo == describe_stream_summary
SELECT s.stream_name, stream.describe_stream_summary(s.stream_name)::text
FROM stream.list_streams() s ORDER BY 1;
\echo == describe_stream
SELECT s.stream_name, stream.describe_stream(s.stream_name)::text
FROM stream.list_streams() s ORDER BY 1;
\echo == records (read_shard)
SELECT s.stream_name, sh.shard_id, r.sequence_number,
       to_char(r.approximate_arrival_timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'),
       r.partition_key, length(r.data), md5(r.data),
       CASE WHEN length(r.data) <= 64 THEN encode(r.data, 'hex') END
FROM stream.list_streams() s, LATERAL stream.list_shards(s.stream_name) sh,
     LATERAL stream.read_shard(s.stream_name, sh.shard_id, 'TRIM_HORIZON') r
ORDER BY 1, 2, 3;
SQL
}

# records through get_shard_iterator(TRIM_HORIZON) + get_records, following iterators
iterate_all() {   # $1 = database, $2 = output file
    sqldb "$1" >"$2" <<'SQL'
WITH RECURSIVE it(stream_name, shard_id, iter, recs, n, empties) AS (
    SELECT s.stream_name, sh.shard_id,
           stream.get_shard_iterator(s.stream_name, sh.shard_id, 'TRIM_HORIZON'),
           NULL::stream.record[], 0, 0
    FROM stream.list_streams() s, LATERAL stream.list_shards(s.stream_name) sh
  UNION ALL
    SELECT it.stream_name, it.shard_id, g.next_shard_iterator, g.records, it.n + 1,
           CASE WHEN coalesce(cardinality(g.records), 0) = 0 THEN it.empties + 1 ELSE 0 END
    FROM it, LATERAL stream.get_records(it.iter, 37) g
    WHERE it.empties < 3 AND it.n < 500
)
SELECT it.stream_name, it.shard_id, r.sequence_number,
       to_char(r.approximate_arrival_timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'),
       r.partition_key, length(r.data), md5(r.data),
       CASE WHEN length(r.data) <= 64 THEN encode(r.data, 'hex') END
FROM it, LATERAL unnest(it.recs) r
ORDER BY 1, 2, 3;
SQL
}

snapshot "$SRC" "$WORK/src.txt"
iterate_all "$SRC" "$WORK/src-it.txt"
NREC=$(wc -l <"$WORK/src-it.txt")
say "source: $(grep -c . "$WORK/src.txt") snapshot lines, $NREC records"
[ "$NREC" = 352 ] || fail "source database: expected 352 records (120 alpha + 201 beta + 31 gamma), read $NREC"
sed -n '/^== records/,$p' "$WORK/src.txt" | tail -n +2 >"$WORK/src-rs.txt"
cmp -s "$WORK/src-rs.txt" "$WORK/src-it.txt" ||
    { fail "source database: read_shard and get_records disagree"; diff "$WORK/src-rs.txt" "$WORK/src-it.txt" | head || true; }
if grep -q '^doomed|' "$WORK/src.txt"; then
    fail "deleted stream 'doomed' still listed in the source database: $(grep '^doomed|' "$WORK/src.txt" | head -1)"
fi
if grep -q "$(printf 'rolled back' | od -An -tx1 | tr -d ' \n')" "$WORK/src.txt"; then
    fail "record of a rolled-back savepoint visible"
fi
grep -q '"RetentionPeriodHours": 48' "$WORK/src.txt" || fail "beta: RetentionPeriodHours 48 not found in describe_stream_summary"
grep -q '"RetentionPeriodHours": 72' "$WORK/src.txt" || fail "gamma: RetentionPeriodHours 72 not found in describe_stream_summary"

# ---------------------------------------------------------------------------
say "pg_dump -Fc $SRC"
if ! timeout 120 pg_dump -Fc -f "$WORK/db.dump" "$SRC" 2>"$WORK/dump.err"; then
    cat "$WORK/dump.err"
    die "pg_dump failed"
fi
[ -s "$WORK/dump.err" ] && { say "pg_dump printed:"; cat "$WORK/dump.err"; }
say "dump: $(stat -c %s "$WORK/db.dump") bytes; $(pg_restore -l "$WORK/db.dump" | grep -c 'TABLE DATA') TABLE DATA entries"

sqladm -c "CREATE DATABASE $DST" >/dev/null
say "pg_restore into $DST"
if ! timeout 120 pg_restore -d "$DST" "$WORK/db.dump" 2>"$WORK/restore.err"; then
    cat "$WORK/restore.err"
    fail "pg_restore reported errors (see above)"
elif [ -s "$WORK/restore.err" ]; then
    say "pg_restore printed:"; cat "$WORK/restore.err"
fi

snapshot "$DST" "$WORK/dst.txt"
iterate_all "$DST" "$WORK/dst-it.txt"
if cmp -s "$WORK/src.txt" "$WORK/dst.txt"; then
    say "restored: list_streams, list_shards, describe_stream(_summary) and all records (sequence number, arrival, key, data) identical"
else
    fail "restored database differs from the source (< source, > restored):"
    diff "$WORK/src.txt" "$WORK/dst.txt" | head -40 || true
fi
if ! cmp -s "$WORK/src-it.txt" "$WORK/dst-it.txt"; then
    fail "restored database: get_shard_iterator+get_records results differ from the source (< source, > restored):"
    diff "$WORK/src-it.txt" "$WORK/dst-it.txt" | head -20 || true
fi

# ---------------------------------------------------------------------------
# new puts: one per shard (explicit hash key = shard start) plus a batch, in both databases
new_puts() {   # $1 = database, $2 = tag, $3 = output file ("stream|shard|seq")
    sqldb "$1" >"$3" <<SQL
SELECT s.stream_name, p.shard_id, p.sequence_number
FROM stream.list_streams() s, LATERAL stream.list_shards(s.stream_name) sh,
     LATERAL generate_series(1, 3) g,
     LATERAL stream.put_record(s.stream_name, 'new', convert_to('$2 ' || g, 'UTF8'),
                               sh.starting_hash_key::text) p
ORDER BY 1, 2, 3;
SELECT 'alpha', p.shard_id, p.sequence_number
FROM stream.put_records('alpha', ARRAY['n1', 'n2', 'n3', 'n4'],
                        ARRAY['\x01'::bytea, '\x02', '\x03', '\x04']) p;
SQL
}
# old maximum per (stream, shard) from the source snapshot
sed -n '/^== records/,$p' "$WORK/src.txt" | tail -n +2 |
    awk -F'|' '{k=$1 "|" $2; if (!(k in m) || ($3 "") > (m[k] "")) m[k]=$3} END {for (k in m) print k "|" m[k]}' |
    sort >"$WORK/oldmax"

check_greater() {   # $1 = label, $2 = file of new puts
    local bad
    bad=$(awk -F'|' 'NR==FNR {m[$1 "|" $2]=$3; next} (($1 "|" $2) in m) && (($3 "") <= (m[$1 "|" $2] "")) {print}' \
        "$WORK/oldmax" "$2" | head -5)
    if [ -n "$bad" ]; then
        fail "$1: new sequence numbers not greater than the old maximum of their shard: $(echo "$bad" | tr '\n' ' ') (old maxima: $(tr '\n' ' ' <"$WORK/oldmax"))"
    else
        say "$1: $(wc -l <"$2") new puts, all above the old maxima of their shards"
    fi
    local nshards
    nshards=$(cut -d'|' -f1,2 "$2" | sort -u | wc -l)
    [ "$nshards" = 6 ] || fail "$1: new puts reached $nshards shards, expected 6 (2 alpha + 3 beta + 1 gamma)"
}
new_puts "$DST" restored "$WORK/dst-new.txt"
check_greater "restored database" "$WORK/dst-new.txt"
new_puts "$SRC" source "$WORK/src-new.txt"
check_greater "source database after the dump" "$WORK/src-new.txt"
if [ "$(cut -d'|' -f3 "$WORK/dst-new.txt" "$WORK/src-new.txt" | sort | uniq -d | wc -l)" != 0 ]; then
    say "(info: the source and the restored database handed out some identical sequence numbers; they are separate databases)"
fi

# the new records are readable in the restored database, after the old ones
iterate_all "$DST" "$WORK/dst-it2.txt"
N2=$(wc -l <"$WORK/dst-it2.txt")
[ "$N2" = $(( NREC + 22 )) ] || fail "restored database: expected $(( NREC + 22 )) records after 22 new puts, read $N2"
# every old record still there, unchanged
sort "$WORK/dst-it.txt" >"$WORK/a"; sort "$WORK/dst-it2.txt" >"$WORK/b"
comm -23 "$WORK/a" "$WORK/b" >"$WORK/lost"
if [ -s "$WORK/lost" ]; then fail "restored database: records lost after new puts:"; head "$WORK/lost"; fi

# a new stream in the restored database gets a fresh stream id and works
if out=$(sqldb "$DST" 2>&1 <<'SQL'
SELECT stream.create_stream('delta', 1);
SELECT sequence_number FROM stream.put_record('delta', 'd', '\xdd'::bytea);
SELECT sequence_number || '|' || encode(data, 'hex') FROM stream.read_shard('delta', 'shardId-000000000000');
SQL
); then
    NEWID=$(echo "$out" | tail -1 | cut -c21-30)
    OLDIDS=$(cut -d'|' -f3 "$WORK/oldmax" | cut -c21-30 | sort -u | tr '\n' ' ')
    if [ "$(echo "$out" | tail -1 | cut -d'|' -f2)" != dd ]; then
        fail "restored database: record put to a new stream not read back: $out"
    elif echo " $OLDIDS" | grep -q " $NEWID "; then
        fail "restored database: new stream 'delta' got stream id $NEWID, already used by a restored stream ($OLDIDS)"
    else
        say "restored database: new stream gets stream id $NEWID (restored ones: $OLDIDS) and works"
    fi
else
    fail "restored database: creating and using a new stream failed: $out"
fi

if out=$(sqldb "$DST" -c "SELECT count(*) FROM stream.run_maintenance()" 2>&1); then
    say "run_maintenance() in the restored database: ok ($out rows)"
else
    fail "run_maintenance() failed in the restored database: $out"
fi
