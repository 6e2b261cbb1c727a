#!/usr/bin/env bash
# ATTACK: stream.sequence_mark is not dumped but delivery_checkpoints are.
# After a delivery passed numbers of rolled-back puts, pg_dump | psql into a
# new database: do counters there start below the restored checkpoint, so
# that new records are never delivered?
set -u
cd "$(dirname "$0")/../.."
source scripts/env.sh
A=stream_attack_dump_a; B=stream_attack_dump_b
psql -X -q -d postgres -c "SET client_min_messages=warning" -c "DROP DATABASE IF EXISTS $A WITH (FORCE)" -c "DROP DATABASE IF EXISTS $B WITH (FORCE)" -c "CREATE DATABASE $A" -c "CREATE DATABASE $B"
P="psql -X -qAt -d $A"
$P -c "CREATE EXTENSION stream" -c "SELECT stream.create_stream('s', 1)" -c "CREATE TABLE events (a int)" \
   -c "SELECT stream.create_delivery_stream('dl', source_stream_name => 's', destination_table => 'events', starting_position => 'TRIM_HORIZON')" >/dev/null
$P -c "SELECT 1 FROM stream.put_record('s', 'k', convert_to('{\"a\": 1}', 'UTF8'))" >/dev/null
$P -c "BEGIN" -c "SELECT count(*) FROM stream.put_records('s', array_fill('k'::text, array[500]), array_fill(convert_to('{\"a\": 2}', 'UTF8'), array[500]))" -c "ROLLBACK" >/dev/null
$P -c "SELECT stream.flush_delivery_stream('dl', 20)" >/dev/null
sleep 3
$P -c "SELECT stream.flush_delivery_stream('dl', 20)" >/dev/null
echo "A: checkpoint $($P -c "SELECT next_seq FROM stream.delivery_checkpoints") max seq $($P -c "SELECT max(seq) FROM stream_data.s1") delivered $($P -c "SELECT count(*) FROM events")"
pg_dump -d $A | psql -X -q -d $B >/dev/null 2>&1
Q="psql -X -qAt -d $B"
$Q -c "SELECT 1 FROM stream.put_record('s', 'k', convert_to('{\"a\": 3}', 'UTF8'))" >/dev/null
$Q -c "SELECT stream.flush_delivery_stream('dl', 20)" >/dev/null
echo "B: checkpoint $($Q -c "SELECT next_seq FROM stream.delivery_checkpoints") max seq $($Q -c "SELECT max(seq) FROM stream_data.s1") delivered $($Q -c "SELECT string_agg(a::text, ',') FROM events")"
