--
-- get_records: GetRecords pages through a shard with "limit" and
-- next_shard_iterator, is caught up on an empty page, can be repeated, sees
-- later records on an old iterator; read_shard's defaults; the limit 1..10000.
-- (Where an iterator starts: iterators.sql.)
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS stream;
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/fixtures/api_streams.psql

--
-- 1. TRIM_HORIZON: every record of the shard, in order, with key/data/arrival
--
SELECT stream.get_shard_iterator('api_one', 'shardId-000000000000', 'TRIM_HORIZON') AS it \gset
SELECT length(:'it') BETWEEN 1 AND 512 AS iterator_length_ok;
SELECT cardinality(records) AS n_records,
       pg_temp.seqs(records) = pg_temp.expected('shardId-000000000000') AS all_in_order,
       next_shard_iterator IS NOT NULL AS has_next,
       millis_behind_latest
FROM stream.get_records(:'it');
SELECT count(*) AS records,
       count(*) FILTER (WHERE p.pk = r.partition_key AND p.data = r.data) AS key_and_data_match,
       count(*) FILTER (WHERE r.approximate_arrival_timestamp BETWEEN :'t0' AND clock_timestamp()) AS arrival_ok
FROM stream.get_records(:'it') g, unnest(g.records) r
JOIN puts p ON p.sequence_number = r.sequence_number AND p.shard_id = 'shardId-000000000000';

-- limit: pages follow next_shard_iterator, then an empty page that is caught up
SELECT next_shard_iterator AS it2, cardinality(records) AS n1,
       pg_temp.seqs(records) = (pg_temp.expected('shardId-000000000000'))[1:2] AS first_page_ok,
       millis_behind_latest >= 0 AS behind_ok
FROM stream.get_records(:'it', 2) \gset
\echo first page: :n1 records, ok :first_page_ok, millis_behind_latest >= 0 :behind_ok
SELECT next_shard_iterator AS it3, cardinality(records) AS n2,
       pg_temp.seqs(records) = (pg_temp.expected('shardId-000000000000'))[3:] AS second_page_ok
FROM stream.get_records(:'it2') \gset
\echo second page: :n2 records, ok :second_page_ok
SELECT cardinality(records) AS n_records, records IS NOT NULL AS records_not_null,
       next_shard_iterator IS NOT NULL AS has_next, millis_behind_latest
FROM stream.get_records(:'it3');
-- an iterator can be used more than once (same result)
SELECT cardinality(records) AS n_records FROM stream.get_records(:'it2');
-- new records appear on the old caught-up iterator
INSERT INTO puts (stream_name, pk, data, shard_id, sequence_number)
SELECT 'api_one', 'late', '\x1a7e', * FROM stream.put_record('api_one', 'late', '\x1a7e', '0');
SELECT n AS late_n FROM puts WHERE pk = 'late' \gset
SELECT cardinality(records) AS n_records,
       pg_temp.seqs(records) = pg_temp.expected('shardId-000000000000', :late_n) AS only_new,
       millis_behind_latest
FROM stream.get_records(:'it3');

-- empty shard (api.three-3_x has no records)
SELECT cardinality(records) AS n_records, records IS NOT NULL AS records_not_null,
       next_shard_iterator IS NOT NULL AS has_next, millis_behind_latest
FROM stream.get_records(stream.get_shard_iterator('api.three-3_x', 'shardId-000000000000', 'TRIM_HORIZON'));

--
-- 2. read_shard (psql-friendly): defaults to TRIM_HORIZON
--
SELECT array_agg(sequence_number ORDER BY sequence_number) = pg_temp.expected('shardId-000000000001') AS read_shard_ok,
       count(*) AS n
FROM stream.read_shard('api_one', 'shardId-000000000001');
SELECT array_agg(r.sequence_number) = pg_temp.expected('shardId-000000000000') AS returned_in_order
FROM stream.read_shard('api_one', 'shardId-000000000000') r;
SELECT partition_key, data FROM stream.read_shard('api_one', 'shardId-000000000001');
SELECT partition_key FROM stream.read_shard('api_one', 'shardId-000000000000', 'TRIM_HORIZON', NULL, NULL, 3);
SELECT count(*) AS api_two_records FROM stream.read_shard('api_two', 'shardId-000000000000');

SELECT stream.delete_stream('api_one');
SELECT stream.delete_stream('api_two');
SELECT stream.delete_stream('api.three-3_x');

\i :abs_srcdir/sql/fixtures/err_streams.psql

--
-- 3. get_records limit 1..10000
--
SELECT cardinality(records) FROM stream.get_records(:'it', 0);
SELECT cardinality(records) FROM stream.get_records(:'it', -1);
SELECT cardinality(records) FROM stream.get_records(:'it', 10001);
SELECT count(*) FROM stream.read_shard('err_s', 'shardId-000000000000', 'TRIM_HORIZON', NULL, NULL, 0);
SELECT count(*) FROM stream.read_shard('err_s', 'shardId-000000000000', 'TRIM_HORIZON', NULL, NULL, 10001);
SELECT cardinality(records) AS limit_1 FROM stream.get_records(:'it', 1);
SELECT cardinality(records) AS limit_10000 FROM stream.get_records(:'it', 10000);

\i :abs_srcdir/sql/fixtures/err_streams_end.psql
