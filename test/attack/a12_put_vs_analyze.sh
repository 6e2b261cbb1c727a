#!/usr/bin/env bash
# NOT RUN IN CI (known, left open): a producer that must make its own missing chunk waits
# for an administrator's ANALYZE/VACUUM of the stream table (SHARE UPDATE EXCLUSIVE).
# A producer that needs a missing chunk does not wait for someone else's
# transaction.  An administrator's ANALYZE of a stream table (vacuumdb -Z,
# or one in an open transaction) holds SHARE UPDATE EXCLUSIVE on the parent
# for its whole run, the lock chunk creation (_add_chunk_for_put) waits for.
set -u
cd "$(dirname "$0")/../.."
source scripts/env.sh
DB=stream_put_vs_analyze
psql -X -q -d postgres -c "SET client_min_messages=warning" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
P="psql -X -qAt -d $DB"
$P -c "CREATE EXTENSION stream" -c "SELECT stream.create_stream('s',1)" -c "SELECT 1 FROM stream.put_record('s','k','\x01')" >/dev/null
K=$($P -c "SELECT floor(extract(epoch FROM now())/3600)::bigint")
for k in $(seq $K $((K+6))); do $P -c "SET client_min_messages=warning" -c "DROP TABLE IF EXISTS stream_data.s1_$k" >/dev/null; done
$P -c "BEGIN" -c "ANALYZE stream_data.s1" -c "SELECT pg_sleep(15)" -c "COMMIT" >/dev/null 2>&1 &
sleep 1
t0=$(date +%s.%N)
r=$($P -c "SET statement_timeout = '10s'" -c "SELECT (stream.put_record('s','k','\x01')).shard_id" 2>&1 | head -1)
took=$(echo "$(date +%s.%N) - $t0" | bc)
psql -X -q -d postgres -c "SET client_min_messages=warning" -c "DROP DATABASE $DB WITH (FORCE)"
wait
if [ "$r" != shardId-000000000000 ] || [ "$(echo "$took > 5" | bc)" = 1 ]; then
    echo "46_put_vs_analyze: FAILED (put: $r after ${took}s)"; exit 1
fi
echo "46_put_vs_analyze: OK (${took}s)"
