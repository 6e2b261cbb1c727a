#!/usr/bin/env bash
# Demo of the stream extension: set up the private cluster, then walk through the
# Kinesis-style API in database stream_demo.
#
#   bash scripts/demo.sh
#
# Afterwards:  source scripts/env.sh && psql stream_demo
set -euo pipefail

# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$STREAM_ROOT"

bash scripts/setup.sh

echo
echo "== (re)creating database stream_demo"
psql -X -q -v ON_ERROR_STOP=1 -d postgres <<'SQL'
SET client_min_messages = warning;
DROP DATABASE IF EXISTS stream_demo WITH (FORCE);
CREATE DATABASE stream_demo;
SQL

psql -X -v ON_ERROR_STOP=1 -d stream_demo <<'SQL'
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
SQL

echo
echo "== done. Explore it yourself:  source scripts/env.sh && psql stream_demo"
