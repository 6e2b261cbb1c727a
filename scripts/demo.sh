#!/usr/bin/env bash
# Demo of the stream extension: set up the private cluster (quietly), then walk
# through the Kinesis-style API in database stream_demo: the data plane, reading
# as JSON, a consumer application with leases and checkpoints, and delivery
# streams to files and to a table.
#
#   bash scripts/demo.sh
#
# Afterwards:  source scripts/env.sh && psql stream_demo
set -euo pipefail

# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$STREAM_ROOT"

# Build quietly: the compiler's output is shown only when something fails.
mkdir -p "$STREAM_ROOT/log"
SETUP_LOG="$STREAM_ROOT/log/demo-setup.log"
echo "== setup: packages, build, install, cluster (log: log/demo-setup.log)"
if ! bash scripts/setup.sh >"$SETUP_LOG" 2>&1; then
    cat "$SETUP_LOG"
    echo "== setup failed; the output above is $SETUP_LOG" >&2
    exit 1
fi
grep -E '^\[cluster\] running' "$SETUP_LOG" || true

# The delivery stream of the demo writes here (as the server's OS user).
LAKE=/tmp/stream_demo_lake
rm -rf "$LAKE"

echo
echo "== (re)creating database stream_demo"
psql -X -q -v ON_ERROR_STOP=1 -d postgres <<'SQL'
SET client_min_messages = warning;
DROP DATABASE IF EXISTS stream_demo WITH (FORCE);
CREATE DATABASE stream_demo;
SQL

psql -X -v ON_ERROR_STOP=1 -v lake="$LAKE" -d stream_demo <<'SQL'
\set QUIET on
\pset null '(null)'
\pset footer off
CREATE EXTENSION stream;

\echo
\echo '== create_stream: stream "demo" with 4 shards, 24 hours retention'
SELECT 'stream "demo" created' AS result FROM stream.create_stream('demo', 4);

\echo
\echo '== list_streams'
SELECT stream_name, stream_status, stream_mode, stream_arn FROM stream.list_streams();

\echo
\echo '== list_shards: each shard owns a range of the 128-bit MD5 hash key space'
SELECT shard_id, starting_hash_key, ending_hash_key, starting_sequence_number
  FROM stream.list_shards('demo') ORDER BY shard_id;

\echo
\echo '== put_record: one record, partition key "user-1"'
SELECT shard_id, sequence_number
  FROM stream.put_record('demo', 'user-1', convert_to('{"event": "login", "user": 1}', 'UTF8')) \gset demo_
SELECT :'demo_shard_id' AS shard_id, :'demo_sequence_number' AS sequence_number;

\echo
\echo '== put_records: a batch of 8 records (one row per input, in input order)'
SELECT shard_id, sequence_number, error_code, error_message
  FROM stream.put_records(
         'demo',
         ARRAY['user-1', 'user-2', 'user-3', 'user-4', 'user-1', 'user-5', 'user-6', 'user-1'],
         ARRAY[convert_to('{"event": "click", "user": 1}', 'UTF8'),
               convert_to('{"event": "login", "user": 2}', 'UTF8'),
               convert_to('{"event": "login", "user": 3}', 'UTF8'),
               convert_to('{"event": "login", "user": 4}', 'UTF8'),
               convert_to('{"event": "click", "user": 1}', 'UTF8'),
               convert_to('{"event": "login", "user": 5}', 'UTF8'),
               convert_to('{"event": "login", "user": 6}', 'UTF8'),
               convert_to('{"event": "logout", "user": 1}', 'UTF8')]);

\echo
\echo '== hash_key: the partition key "user-1" hashes to'
SELECT stream.hash_key('user-1') AS hash_key;

\echo
\echo '== describe_stream_summary'
\pset format unaligned
\pset tuples_only on
SELECT jsonb_pretty(stream.describe_stream_summary('demo'));
\pset format aligned
\pset tuples_only off

\echo
\echo '== get_shard_iterator (TRIM_HORIZON) on the shard of "user-1":' :demo_shard_id
SELECT stream.get_shard_iterator('demo', :'demo_shard_id', 'TRIM_HORIZON') AS demo_iterator \gset
SELECT left(:'demo_iterator', 40) || '...' AS shard_iterator;

\echo
\echo '== get_records(iterator, 100): the records, oldest first'
SELECT r.sequence_number, r.partition_key, convert_from(r.data, 'UTF8') AS data,
       g.millis_behind_latest
  FROM stream.get_records(:'demo_iterator', 100) AS g
       CROSS JOIN LATERAL unnest(g.records) AS r;

\echo
\echo '== get_records again with the returned next_shard_iterator: nothing new yet'
SELECT g.next_shard_iterator AS demo_next FROM stream.get_records(:'demo_iterator', 100) AS g \gset
SELECT cardinality(g.records) AS record_count, g.millis_behind_latest
  FROM stream.get_records(:'demo_next', 100) AS g;

\echo
\echo '== read_shard: the psql-friendly way to read every shard from TRIM_HORIZON'
SELECT s.shard_id, r.sequence_number, r.partition_key, convert_from(r.data, 'UTF8') AS data
  FROM stream.list_shards('demo') AS s
       CROSS JOIN LATERAL stream.read_shard('demo', s.shard_id) AS r
 ORDER BY s.shard_id, r.sequence_number;

\echo
\echo '== get_records_json: the same records as rows, data as jsonb (and text), for clients such as psycopg2'
SELECT sequence_number, partition_key, data_json ->> 'event' AS event, data_json -> 'user' AS "user"
  FROM stream.get_records_json(:'demo_iterator', 100);

\echo
\echo '== consumers: application "billing" (KCL-style leases and checkpoints) over the 4 shards'
SELECT 'application "billing" registered' AS result FROM stream.register_application('billing', 'demo');
\echo '-- worker-1 takes leases; then worker-2 joins and takes its fair share (one steal per round)'
SELECT shard_id, checkpoint FROM stream.acquire_leases('billing', 'worker-1');
SELECT shard_id, checkpoint FROM stream.acquire_leases('billing', 'worker-2');
SELECT shard_id, checkpoint FROM stream.acquire_leases('billing', 'worker-2');
SELECT lease_key, lease_owner, held, checkpoint FROM stream.application_leases ORDER BY lease_key;

SELECT lease_key AS billing_shard FROM stream.application_leases
 WHERE lease_owner = 'worker-2' ORDER BY lease_key LIMIT 1 \gset
\echo '-- worker-2 reads' :billing_shard 'from its checkpoint (TRIM_HORIZON) and checkpoints the last record'
SELECT stream.get_lease_iterator('billing', 'worker-2', :'billing_shard') AS billing_it \gset
SELECT sequence_number, partition_key, data_text FROM stream.get_records_json(:'billing_it', 1000)
 WHERE sequence_number IS NOT NULL;
SELECT max(sequence_number) AS billing_last
  FROM stream.get_records_json(:'billing_it', 1000) \gset
SELECT 'checkpoint written' AS result
  FROM stream.checkpoint('billing', 'worker-2', :'billing_shard', :'billing_last');
SELECT lease_key, lease_owner, checkpoint FROM stream.application_leases ORDER BY lease_key;
\echo '-- worker-1 may not checkpoint a lease it lost (the old owner is fenced off):'
\set ON_ERROR_STOP 0
\set VERBOSITY terse
SELECT stream.checkpoint('billing', 'worker-1', :'billing_shard', :'billing_last');
\set VERBOSITY default
\set ON_ERROR_STOP 1

\echo
\echo '== delivery streams (Firehose): "demo" to JSON files under' :lake ', and direct puts into a table'
SELECT stream.create_delivery_stream('demo-to-files', source_stream_name => 'demo', destination => :'lake',
                                     format => 'json', buffer_interval_seconds => 60) AS arn;
CREATE TABLE logins ("user" int, event text);
SELECT stream.create_delivery_stream('logins-table', destination_table => 'logins') AS arn;
\echo '-- records put after creation (a stream source starts at LATEST by default):'
SELECT count(*) AS put FROM stream.put_records_json('demo',
         '[{"partition_key": "user-7", "data": {"event": "login", "user": 7}},
           {"partition_key": "user-8", "data": {"event": "click", "user": 8}},
           {"partition_key": "user-9", "data": {"event": "login", "user": 9}}]');
SELECT count(*) AS put FROM stream.put_delivery_record_batch('logins-table',
         ARRAY[convert_to('{"user": 7, "event": "login"}', 'UTF8'), convert_to('{"user": 9, "event": "login"}', 'UTF8')])
 WHERE error_code IS NULL;
\echo '-- flush_delivery_stream delivers what is buffered now (otherwise: after 60 s or 5 MiB)'
SELECT stream.flush_delivery_stream('demo-to-files') AS files_delivered,
       stream.flush_delivery_stream('logins-table') AS table_delivered;
SELECT delivery_stream_name, records_delivered, files_delivered, last_error FROM stream.delivery_stream_status;
SELECT * FROM logins;
SQL

echo
echo "== the delivered files (one JSON object per line; prefix yyyy/MM/dd/HH/ by arrival time):"
find "$LAKE" -type f | sort | while read -r f; do
    echo "-- ${f#"$LAKE"/}"
    cat "$f"
done

echo
echo "== done. Explore it yourself:  source scripts/env.sh && psql stream_demo"
