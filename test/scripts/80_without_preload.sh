#!/usr/bin/env bash
# Without shared_preload_libraries the SQL API must still work: producers
# serialise per shard (no shared memory), nothing is skipped, maintenance is a
# function to schedule, and what needs the worker says so.  Runs its own
# throw-away cluster so that the main one keeps its preload.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
TMP="$(mktemp -d /tmp/stream-nopreload.XXXXXX)"
chmod 755 "$TMP"
export STREAM_PGDATA="$TMP/data" STREAM_PGSOCK="$TMP/sock" STREAM_PGPORT="${STREAM_NOPRELOAD_PORT:-5479}" STREAM_PRELOAD=""
cleanup() { bash "$ROOT/scripts/cluster.sh" destroy >/dev/null 2>&1 || true; rm -rf "$TMP"; }
trap cleanup EXIT
source "$ROOT/scripts/env.sh"
bash "$ROOT/scripts/cluster.sh" start >/dev/null 2>&1
fail() { echo "FAIL: $*"; exit 1; }
q() { psql -X -v ON_ERROR_STOP=1 -qAt -d stream_np -c "$1"; }

psql -X -qAt -d postgres -c "CREATE DATABASE stream_np" >/dev/null
[ "$(psql -XAt -d postgres -c 'SHOW shared_preload_libraries')" = "" ] || fail "the library is preloaded"
q "CREATE EXTENSION stream" >/dev/null
echo "[80_without_preload] extension created without preloading"

[ "$(q "SELECT stream_internal._wake_worker()")" = "f" ] || fail "_wake_worker() should report that no worker runs"
q "SELECT stream.create_stream('np', 2)" >/dev/null
q "SELECT count(*) FROM stream.put_records('np', ARRAY['a','b','c','d','e'], ARRAY['1','2','3','4','5']::bytea[])" >/dev/null

# producers serialise: a second producer waits for an open put on the same shard
psql -X -qAt -d stream_np >/dev/null 2>&1 <<'SQL' &
BEGIN;
SELECT stream.put_record('np', 'k', 'held', '0');
SELECT pg_sleep(2);
COMMIT;
SQL
HOLDER=$!
sleep 0.5
start=$(date +%s.%N)
q "SELECT stream.put_record('np', 'k', 'after', '0')" >/dev/null
waited=$(echo "$(date +%s.%N) - $start" | bc)
wait $HOLDER
echo "[80_without_preload] second producer on the same shard waited ${waited}s for the open transaction"
awk "BEGIN{exit !($waited > 1.0)}" || fail "without shared memory producers of a shard must serialise"

# readers see every committed record exactly once, in put order, nothing rolled back
rb=$(psql -X -qAt -d stream_np -c "BEGIN" -c "SELECT sequence_number FROM stream.put_record('np','k','rolled-back','0')" -c "ROLLBACK")
# a rolled-back put's number is never handed out again, here either
nxt=$(q "SELECT sequence_number FROM stream.put_record('np', 'k2', 'after-rollback', '0')")
[[ "$nxt" > "$rb" ]] || fail "the number $rb of a rolled-back put was handed out again ($nxt)"
got=$(q "SELECT string_agg(convert_from(data, 'UTF8'), ',' ORDER BY sequence_number) FROM stream.read_shard('np', 'shardId-000000000000') WHERE partition_key = 'k'")
[ "$got" = "held,after" ] || fail "shard 0 holds '$got', expected 'held,after'"
total=$(q "SELECT sum(n) FROM (SELECT (SELECT count(*) FROM stream.read_shard('np', shard_id)) n FROM stream.list_shards('np')) s")
[ "$total" = 8 ] || fail "expected 8 records, read $total"
it=$(q "SELECT stream.get_shard_iterator('np', 'shardId-000000000000', 'LATEST')")
q "SELECT stream.put_record('np', 'k', 'latest', '0')" >/dev/null
got=$(q "SELECT string_agg(convert_from(r.data, 'UTF8'), ',') FROM stream.get_records('$it') g, unnest(g.records) r")
[ "$got" = "latest" ] || fail "LATEST iterator read '$got'"
seqs_ok=$(q "SELECT bool_and(s > lag) FROM (SELECT sequence_number s, lag(sequence_number) OVER (ORDER BY sequence_number) FROM stream.read_shard('np','shardId-000000000000')) x WHERE lag IS NOT NULL")
[ "$seqs_ok" = t ] || fail "sequence numbers not increasing"
echo "[80_without_preload] reads: every committed record once, in order; LATEST works"

# maintenance is a plain function (what pg_cron would run)
rows=$(q "SELECT count(*) FROM stream.run_maintenance()")
[ "$rows" = 1 ] || fail "run_maintenance() returned $rows rows"

# subscribe_to_shard falls back to polling and still returns promptly
q "SELECT stream.register_stream_consumer('np', 'c')" >/dev/null
got=$(q "SELECT cardinality(records) FROM stream.subscribe_to_shard('np', 'c', 'shardId-000000000000', 'TRIM_HORIZON', wait_timeout => '1 second')")
[ "$got" = 6 ] || fail "subscribe_to_shard returned $got records, expected 6"
echo "[80_without_preload] run_maintenance() and subscribe_to_shard work without the worker"
# no worker and the premade chunks ran out: a producer makes its chunk itself,
# while a reader idles in a transaction on the stream table (issue 7, defect 5)
sid=$(q "SELECT stream_id FROM stream.streams WHERE stream_name = 'np'")
k=$(q "SELECT floor(extract(epoch FROM clock_timestamp()) / 3600)::bigint")
q "SET client_min_messages = warning; DROP TABLE IF EXISTS stream_data.s${sid}_$k, stream_data.s${sid}_$((k + 1)), stream_data.s${sid}_$((k + 2))"
psql -X -qAt -d stream_np >/dev/null 2>&1 <<SQL &
BEGIN;
SELECT count(*) FROM stream_data.s$sid;
SELECT pg_sleep(3);
COMMIT;
SQL
READER=$!
sleep 0.5
q "SELECT stream.put_record('np', 'k', 'own-chunk', '0')" >/dev/null || fail "a put with no premade chunk failed"
q "SELECT count(*) FROM stream.put_records('np', ARRAY['x','y'], ARRAY['1','2']::bytea[]) WHERE error_code IS NULL" | grep -qx 2 \
    || fail "put_records with no premade chunk failed"
wait $READER
got=$(q "SELECT string_agg(convert_from(data, 'UTF8'), ',') FROM stream.read_shard('np', 'shardId-000000000000') WHERE partition_key = 'k'")
[ "$got" = "own-chunk" ] || fail "read '$got' after the producer made its chunk, expected 'own-chunk'"
echo "[80_without_preload] a producer makes its missing chunk itself, next to an idle reader"
# the chunk is made in a transaction of its own (a one-shot chunk maker): a producer
# on another shard does not wait for the open transaction of the one that found it missing
q "SET client_min_messages = warning; DROP TABLE IF EXISTS stream_data.s${sid}_$k, stream_data.s${sid}_$((k + 1)), stream_data.s${sid}_$((k + 2))"
psql -X -qAt -d stream_np >/dev/null 2>&1 <<'SQL' &
BEGIN;
SELECT stream.put_record('np', 'k', 'p1', '0');
SELECT pg_sleep(4);
COMMIT;
SQL
P1=$!
sleep 1
start=$(date +%s.%N)
q "SELECT stream.put_record('np', 'k', 'p2', '170141183460469231731687303715884105728')" >/dev/null \
    || fail "a put on shard 1 failed"
waited=$(echo "$(date +%s.%N) - $start" | bc)
wait $P1
awk "BEGIN{exit !($waited < 2.0)}" || fail "a producer on another shard waited ${waited}s for the transaction that found the chunk missing"
echo "[80_without_preload] the missing chunk was made outside the producer's transaction (other producer waited ${waited}s)"

# a producer holding a lock on the stream table that the chunk maker would wait for makes the chunk itself
q "SET client_min_messages = warning; DROP TABLE IF EXISTS stream_data.s${sid}_$k, stream_data.s${sid}_$((k + 1)), stream_data.s${sid}_$((k + 2))"
timeout 20 psql -X -v ON_ERROR_STOP=1 -qAt -d stream_np >/dev/null <<SQL || fail "a put holding the stream table's SHARE UPDATE EXCLUSIVE lock failed or hung"
BEGIN;
LOCK TABLE ONLY stream_data.s$sid IN SHARE UPDATE EXCLUSIVE MODE;
SELECT stream.put_record('np', 'k', 'locked', '0');
COMMIT;
SQL
got=$(q "SELECT string_agg(convert_from(data, 'UTF8'), ',' ORDER BY sequence_number) FROM stream.read_shard('np', 'shardId-000000000000') WHERE partition_key = 'k'")
[ "$got" = "locked" ] || fail "shard 0 read '$got', expected 'locked' (the chunk holding p1 was dropped)"
echo "[80_without_preload] ... and in its own transaction when it holds the stream table"
# resharding without shared memory: a split waits for the producers in flight on its
# parent (their records stay below its end); a session whose catalog cache predates
# the split puts to a child; the parent's read ends with the children
q "SELECT stream.create_stream('nps', 1)" >/dev/null
out=$(timeout 30 psql -X -v ON_ERROR_STOP=1 -qAt -d stream_np <<'SQL'
SELECT shard_id FROM stream.put_record('nps', 'k', 'before', '1');
\! (echo "BEGIN; SELECT stream.put_record('nps', 'k', 'in-flight', '0'); SELECT pg_sleep(2); COMMIT;" | psql -X -qAt -d stream_np >/dev/null 2>&1 &) ; sleep 0.5
\! psql -X -qAt -v ON_ERROR_STOP=1 -d stream_np -c "SELECT stream.split_shard('nps', 'shardId-000000000000', '170141183460469231731687303715884105728')" >/dev/null
SELECT shard_id FROM stream.put_record('nps', 'k', 'after', '1');
SQL
) || fail "put, split, put in one session failed"
[ "$out" = "$(printf 'shardId-000000000000\nshardId-000000000001')" ] || fail "puts around a split went to: $out"
got=$(q "SELECT string_agg(convert_from(data, 'UTF8'), ',' ORDER BY sequence_number) FROM stream.read_shard('nps', 'shardId-000000000000')")
[ "$got" = "before,in-flight" ] || fail "the closed parent holds '$got', expected 'before,in-flight'"
got=$(q "SELECT next_shard_iterator IS NULL, jsonb_array_length(child_shards) FROM stream.get_records(stream.get_shard_iterator('nps', 'shardId-000000000000', 'LATEST'))")
[ "$got" = "t|2" ] || fail "the closed parent's read ended with '$got', expected 't|2'"
bad=$(q "SELECT count(*) FROM stream_data.s$(q "SELECT stream_id FROM stream.streams WHERE stream_name = 'nps'") d JOIN stream.shards sh ON sh.stream_id = (SELECT stream_id FROM stream.streams WHERE stream_name = 'nps') AND sh.shard_index = d.shard_id WHERE d.seq > sh.ending_seq")
[ "$bad" = 0 ] || fail "$bad records lie past their shard's end"
echo "[80_without_preload] a split waited for the producer in flight on its parent; a stale session put to a child"
echo "80_without_preload: ok"
