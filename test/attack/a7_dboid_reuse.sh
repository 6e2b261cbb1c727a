#!/usr/bin/env bash
# ATTACK: shard counters are keyed by (database OID, stream id, shard) and
# survive DROP DATABASE.  A database created again with the same OID
# (CREATE DATABASE ... OID, or OID wrap-around) inherits the dropped one's
# counter, whose reserved mark is not durable in the new database's
# stream.sequence_mark: numbers handed out to a rolled-back put are handed
# out again after a crash.
set -u
cd "$(dirname "$0")/../.."
source scripts/env.sh
A=stream_attack_oid_a; B=stream_attack_oid_b
psql -X -q -d postgres -c "SET client_min_messages=warning" -c "DROP DATABASE IF EXISTS $A WITH (FORCE)" -c "DROP DATABASE IF EXISTS $B WITH (FORCE)" -c "CREATE DATABASE $A"
OID=$(psql -X -qAt -d postgres -c "SELECT oid FROM pg_database WHERE datname='$A'")
psql -X -qAt -d $A -c "CREATE EXTENSION stream" -c "SELECT stream.create_stream('s', 1)" -c "SELECT 1 FROM stream.put_record('s', 'a', '\x01')" >/dev/null
psql -X -q -d postgres -c "DROP DATABASE $A WITH (FORCE)" -c "CREATE DATABASE $B OID = $OID"
P="psql -X -qAt -d $B"
$P -c "CREATE EXTENSION stream" -c "SELECT stream.create_stream('s', 1)" >/dev/null
N1=$($P -c "BEGIN" -c "SELECT sequence_number FROM stream.put_record('s', 'rolled-back', '\x01')" -c "ROLLBACK")
echo "rolled back: $N1 (mark in $B: $($P -c "SELECT last_value FROM stream.sequence_mark"))"
kill -9 "$(head -1 "$STREAM_PGDATA/postmaster.pid")"; sleep 2
bash scripts/cluster.sh start >/dev/null
out=$($P -c "SELECT sequence_number FROM stream.put_record('s', 'k1', '\x01')" -c "SELECT sequence_number FROM stream.put_record('s', 'k2', '\x01')")
echo "after crash: $out"
psql -X -q -d postgres -c "DROP DATABASE $B WITH (FORCE)"
if echo "$out" | grep -qx "$N1"; then echo "BUG: $N1 handed out twice"; exit 1; fi
echo held
