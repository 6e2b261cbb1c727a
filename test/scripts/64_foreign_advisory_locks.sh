#!/usr/bin/env bash
# No role without grants can stall the extension with advisory locks.  The
# extension's own locks (a delivery stream's unit of work, the processor
# unit lock of runtime/round.c; the consumer limit trigger, 25_fanout.sql) must not lie
# in the key space that pg_advisory_lock(int4, int4) reaches (field4 = 2):
# otherwise a LOGIN role with no grants holding pg_advisory_lock(1179123713,
# id) stops a delivery stream for good and blocks delete_delivery_stream,
# and pg_advisory_lock(1398034003, stream_id) blocks register_stream_consumer.
set -u
cd "$(dirname "$0")/../.."
source scripts/env.sh
DB=stream_attack_adv
psql -X -q -d postgres -c "SET client_min_messages=warning" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "DROP ROLE IF EXISTS att_nobody" -c "CREATE DATABASE $DB" -c "CREATE ROLE att_nobody LOGIN"
P="psql -X -qAt -d $DB"
$P -c "CREATE EXTENSION stream" -c "SELECT stream.create_stream('src',1)" \
   -c "CREATE TABLE events (a int, b text)" \
   -c "SELECT stream.create_delivery_stream('to-table', destination_table => 'events', buffer_interval_seconds => 60)" >/dev/null
ID=$($P -c "SELECT delivery_stream_id FROM stream.delivery_streams WHERE delivery_stream_name='to-table'")
SID=$($P -c "SELECT stream_id FROM stream.streams WHERE stream_name='src'")
fails=0
# hostile session holds the locks (session level, no transaction) for 40 s
psql -X -qAt -d $DB -U att_nobody -c "SELECT pg_advisory_lock(1179123713, $ID), pg_advisory_lock(1398034003, $SID)" -c "SELECT pg_sleep(40)" >/dev/null 2>&1 &
HPID=$!
sleep 1
$P -c "SELECT stream.put_delivery_record('to-table', '{\"a\": 1, \"b\": \"x\"}')" >/dev/null
r=$($P -c "SELECT stream.flush_delivery_stream('to-table', 10)" 2>&1); echo "flush: $r"
n=$($P -c "SELECT count(*) FROM events"); echo "delivered rows: $n"
[ "$n" = 1 ] || { echo "BUG: a role with no grants stalls delivery with pg_advisory_lock(1179123713, $ID)"; fails=1; }
r=$($P -c "SET statement_timeout='5s'" -c "SELECT stream.register_stream_consumer('src', 'c1')" 2>&1 | head -1); echo "register: $r"
case "$r" in *timeout*|*cancel*) echo "BUG: register_stream_consumer blocked by pg_advisory_lock(1398034003, $SID)"; fails=1;; esac
r=$($P -c "SET statement_timeout='5s'" -c "SELECT stream.delete_delivery_stream('to-table')" 2>&1 | head -1); echo "delete: $r"
case "$r" in *timeout*|*cancel*) echo "BUG: delete_delivery_stream blocked by a role with no grants"; fails=1;; esac
kill $HPID 2>/dev/null; wait
psql -X -q -d postgres -c "DROP DATABASE $DB WITH (FORCE)" -c "DROP ROLE att_nobody"
[ $fails = 0 ] && echo "64_foreign_advisory_locks: OK" || echo "64_foreign_advisory_locks: FAILED"
exit $fails
