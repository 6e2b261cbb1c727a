#!/usr/bin/env bash
# No sequence number is handed out twice after DROP/CREATE EXTENSION and a
# crash.  Shard counters are keyed by (database OID, stream id, shard) and
# survive DROP EXTENSION.  After DROP EXTENSION stream; CREATE EXTENSION
# stream, stream ids restart at 1 and the new stream 1 inherits the old
# stream 1's counter, whose reserved mark is not durable in the new
# stream.sequence_mark: numbers handed out to a rolled-back put are handed
# out again after a crash.
set -u
cd "$(dirname "$0")/../.."
source scripts/env.sh
A=stream_attack_ext; B=stream_attack_ext
psql -X -q -d postgres -c "SET client_min_messages=warning" -c "DROP DATABASE IF EXISTS $A WITH (FORCE)" -c "CREATE DATABASE $A"
psql -X -qAt -d $A -c "CREATE EXTENSION stream" -c "SELECT stream.create_stream('s', 1)" -c "SELECT 1 FROM stream.put_record('s', 'a', '\x01')" >/dev/null
P="psql -X -qAt -d $B"
$P -c "DROP EXTENSION stream CASCADE" -c "CREATE EXTENSION stream" -c "SELECT stream.create_stream('s', 1)" >/dev/null
N1=$($P -c "BEGIN" -c "SELECT sequence_number FROM stream.put_record('s', 'rolled-back', '\x01')" -c "ROLLBACK")
echo "rolled back: $N1 (mark in $B: $($P -c "SELECT last_value FROM stream.sequence_mark"))"
PM=$(head -1 "$STREAM_PGDATA/postmaster.pid"); kill -9 "$PM"
for i in $(seq 50); do kill -0 "$PM" 2>/dev/null || break; sleep 0.1; done; sleep 1
bash scripts/cluster.sh start >/dev/null 2>&1
out=$($P -c "SELECT sequence_number FROM stream.put_record('s', 'k1', '\x01')" -c "SELECT sequence_number FROM stream.put_record('s', 'k2', '\x01')")
echo "after crash: $out"
psql -X -q -d postgres -c "DROP DATABASE $B WITH (FORCE)"
if echo "$out" | grep -qx "$N1"; then echo "27_extension_recreate_counter: FAILED ($N1 handed out twice)"; exit 1; fi
echo "27_extension_recreate_counter: OK"
