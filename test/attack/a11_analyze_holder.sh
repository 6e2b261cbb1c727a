#!/usr/bin/env bash
# ATTACK: an administrator's ANALYZE of a stream table (vacuumdb -Z, or in
# an open transaction) holds SHARE UPDATE EXCLUSIVE on the parent: does a
# producer that needs a missing chunk wait for it?
set -u
cd "$(dirname "$0")/../.."
source scripts/env.sh
DB=stream_attack_an
psql -X -q -d postgres -c "SET client_min_messages=warning" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
P="psql -X -qAt -d $DB"
$P -c "CREATE EXTENSION stream" -c "SELECT stream.create_stream('s',1)" -c "SELECT 1 FROM stream.put_record('s','k','\x01')" >/dev/null
K=$($P -c "SELECT floor(extract(epoch FROM now())/3600)::bigint")
for k in $(seq $K $((K+6))); do $P -c "DROP TABLE IF EXISTS stream_data.s1_$k" >/dev/null; done
$P -c "BEGIN" -c "ANALYZE stream_data.s1" -c "SELECT pg_sleep(20)" -c "COMMIT" >/dev/null &
sleep 1
t0=$(date +%s.%N)
r=$($P -c "SET statement_timeout = '15s'" -c "SELECT (stream.put_record('s','k','\x01')).shard_id" 2>&1 | head -1)
echo "put: $r after $(echo "$(date +%s.%N) - $t0" | bc)s"
wait
psql -X -q -d postgres -c "DROP DATABASE $DB WITH (FORCE)"
