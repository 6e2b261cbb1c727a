#!/usr/bin/env bash
# Records put after pg_dump | psql are delivered.  A delivery's checkpoint
# (dumped) may lie past numbers that rolled-back puts took; the restored
# database's counters must start above it, so stream.sequence_mark must be
# dumped too (it was not: the first put after the restore took a number
# below the checkpoint and was never delivered).
set -u
cd "$(dirname "$0")/../.."
source scripts/env.sh
A=stream_dump_mark_a; B=stream_dump_mark_b
psql -X -q -d postgres -c "SET client_min_messages=warning" -c "DROP DATABASE IF EXISTS $A WITH (FORCE)" -c "DROP DATABASE IF EXISTS $B WITH (FORCE)" -c "CREATE DATABASE $A" -c "CREATE DATABASE $B"
P="psql -X -qAt -d $A"
$P -c "CREATE EXTENSION stream" -c "SELECT stream.create_stream('s', 1)" -c "CREATE TABLE events (a int)" \
   -c "SELECT stream.create_delivery_stream('dl', source_stream_name => 's', destination_table => 'events', starting_position => 'TRIM_HORIZON')" >/dev/null
$P -c "SELECT 1 FROM stream.put_record('s', 'k', convert_to('{\"a\": 1}', 'UTF8'))" >/dev/null
$P -c "BEGIN" -c "SELECT count(*) FROM stream.put_records('s', array_fill('k'::text, array[500]), array_fill(convert_to('{\"a\": 2}', 'UTF8'), array[500]))" -c "ROLLBACK" >/dev/null
$P -c "SELECT stream.flush_delivery_stream('dl', 20)" >/dev/null
sleep 3
$P -c "SELECT stream.flush_delivery_stream('dl', 20)" >/dev/null
echo "A: checkpoint $($P -c "SELECT next_seq FROM stream.processor_checkpoints") max seq $($P -c "SELECT max(seq) FROM stream_data.s1") delivered $($P -c "SELECT count(*) FROM events")"
pg_dump -d $A | psql -X -q -d $B >/dev/null 2>&1
Q="psql -X -qAt -d $B"
$Q -c "SELECT 1 FROM stream.put_record('s', 'k', convert_to('{\"a\": 3}', 'UTF8'))" >/dev/null
$Q -c "SELECT stream.flush_delivery_stream('dl', 20)" >/dev/null
echo "B: checkpoint $($Q -c "SELECT next_seq FROM stream.processor_checkpoints") max seq $($Q -c "SELECT max(seq) FROM stream_data.s1") delivered $($Q -c "SELECT string_agg(a::text, ',') FROM events")"
GOT=$($Q -c "SELECT count(*) FROM events WHERE a = 3")
psql -X -q -d postgres -c "DROP DATABASE $A WITH (FORCE)" -c "DROP DATABASE $B WITH (FORCE)"
if [ "$GOT" != 1 ]; then echo "31_dump_restore_mark: FAILED (the record put after the restore was delivered $GOT times, not once)"; exit 1; fi
echo "31_dump_restore_mark: OK"
