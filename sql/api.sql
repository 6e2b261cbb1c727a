--
-- api: stream lifecycle, metadata shapes, puts, iterators and reads.
-- Never prints sequence numbers, timestamps or iterators: only derived facts.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS stream;
\set VERBOSITY terse

SELECT count(*) AS data_relations_at_start FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'stream_data' \gset

SELECT clock_timestamp() AS t0 \gset

--
-- 1. create / list / describe
--
SELECT stream.create_stream('api_one', 2);
SELECT stream.create_stream('api_two', 1, 48);
SELECT stream.create_stream('api.three-3_x', 1);

SELECT stream_name,
       stream_arn ~ ('^arn:aws:kinesis:[a-z0-9-]+:[0-9]{12}:stream/' || regexp_replace(stream_name, '([.-])', '\\\1', 'g') || '$') AS arn_ok,
       stream_status, stream_mode,
       stream_creation_timestamp BETWEEN :'t0' AND clock_timestamp() AS created_ok
FROM stream.list_streams() WHERE stream_name LIKE 'api%'
ORDER BY stream_name;

-- list_streams returns names in lexical order
SELECT array_agg(stream_name) AS listed_order FROM stream.list_streams() WHERE stream_name LIKE 'api%';

-- describe_stream: StreamDescription shape
SELECT stream.describe_stream('api_one') AS d \gset
SELECT jsonb_typeof(:'d'::jsonb) AS type,
       :'d'::jsonb ?& ARRAY['StreamName', 'StreamARN', 'StreamStatus', 'Shards', 'HasMoreShards',
                           'RetentionPeriodHours', 'StreamCreationTimestamp', 'EnhancedMonitoring',
                           'EncryptionType'] AS has_keys,
       :'d'::jsonb ->> 'StreamName' AS name,
       :'d'::jsonb ->> 'StreamStatus' AS status,
       :'d'::jsonb -> 'RetentionPeriodHours' AS retention,
       jsonb_typeof(:'d'::jsonb -> 'RetentionPeriodHours') AS retention_type,
       jsonb_array_length(:'d'::jsonb -> 'Shards') AS shards,
       :'d'::jsonb -> 'HasMoreShards' AS has_more,
       :'d'::jsonb ->> 'EncryptionType' AS encryption;
SELECT (SELECT stream_arn FROM stream.list_streams() WHERE stream_name = 'api_one')
       = :'d'::jsonb ->> 'StreamARN' AS arn_matches_list_streams;
-- shards in describe_stream match list_shards
SELECT sh ->> 'ShardId' AS shard_id,
       sh -> 'HashKeyRange' ->> 'StartingHashKey' AS starting_hash_key,
       sh -> 'HashKeyRange' ->> 'EndingHashKey' AS ending_hash_key,
       sh -> 'SequenceNumberRange' ->> 'StartingSequenceNumber' ~ '^[0-9]{40}$' AS start_seq_ok,
       sh -> 'SequenceNumberRange' ? 'EndingSequenceNumber'
         AND sh -> 'SequenceNumberRange' -> 'EndingSequenceNumber' <> 'null'::jsonb AS has_ending_seq,
       (sh -> 'HashKeyRange' ->> 'StartingHashKey')::numeric = l.starting_hash_key
         AND (sh -> 'HashKeyRange' ->> 'EndingHashKey')::numeric = l.ending_hash_key
         AND sh -> 'SequenceNumberRange' ->> 'StartingSequenceNumber' = l.starting_sequence_number AS matches_list_shards
FROM jsonb_array_elements(:'d'::jsonb -> 'Shards') sh
LEFT JOIN stream.list_shards('api_one') l ON l.shard_id = sh ->> 'ShardId'
ORDER BY 1;

-- describe_stream_summary: StreamDescriptionSummary shape
SELECT stream.describe_stream_summary('api_two') AS s \gset
SELECT :'s'::jsonb ?& ARRAY['StreamName', 'StreamARN', 'StreamStatus', 'RetentionPeriodHours',
                           'StreamCreationTimestamp', 'EnhancedMonitoring', 'EncryptionType',
                           'OpenShardCount', 'ConsumerCount'] AS has_keys,
       :'s'::jsonb ? 'Shards' AS has_shards,
       :'s'::jsonb ->> 'StreamName' AS name,
       :'s'::jsonb ->> 'StreamStatus' AS status,
       :'s'::jsonb -> 'RetentionPeriodHours' AS retention,
       :'s'::jsonb -> 'OpenShardCount' AS open_shards,
       :'s'::jsonb -> 'ConsumerCount' AS consumers;
SELECT stream.describe_stream_summary('api_one') -> 'OpenShardCount' AS open_shards_one,
       stream.describe_stream_summary('api_one') -> 'RetentionPeriodHours' AS retention_one,
       stream.describe_stream('api_two') -> 'RetentionPeriodHours' AS retention_two,
       jsonb_array_length(stream.describe_stream('api_two') -> 'Shards') AS shards_two;

--
-- 2. put_record / put_records
--
CREATE TEMP TABLE puts (n serial, stream_name text, pk text, data bytea,
                        shard_id text, sequence_number text);

-- put_record returns exactly one row
SELECT count(*) AS rows FROM stream.put_record('api_two', 'x', 'hello');
SELECT shard_id, sequence_number ~ '^[0-9]{40}$' AS seq_40_digits
FROM stream.put_record('api_two', 'y', 'world');
-- explicit hash key 0 -> shard 0, 2^128-1 -> shard 1 (of 2)
INSERT INTO puts (stream_name, pk, data, shard_id, sequence_number)
SELECT 'api_one', 'k1', '\x0101', * FROM stream.put_record('api_one', 'k1', '\x0101', '0');
INSERT INTO puts (stream_name, pk, data, shard_id, sequence_number)
SELECT 'api_one', 'k2', '\x', * FROM stream.put_record('api_one', 'k2', '\x', '0');
INSERT INTO puts (stream_name, pk, data, shard_id, sequence_number)
SELECT 'api_one', 'k3', '\xdeadbeef', * FROM stream.put_record('api_one', 'k3', '\xdeadbeef', '340282366920938463463374607431768211455');

SELECT n, pk, shard_id, sequence_number ~ '^[0-9]{40}$' AS seq_40_digits
FROM puts ORDER BY n;

-- put_records: one row per input, in input order
CREATE TEMP TABLE batch AS
SELECT r.*
FROM stream.put_records('api_one',
                        ARRAY['b1', 'b2', 'b3', 'b4', 'b5', 'b6'],
                        ARRAY['\x01', '\x02', '\x03', '\x', '\x05', '\x06']::bytea[],
                        ARRAY['0', '340282366920938463463374607431768211455', '1', '340282366920938463463374607431768211454', NULL, NULL])
     WITH ORDINALITY AS r(shard_id, sequence_number, error_code, error_message, ord);
SELECT ord, shard_id, sequence_number ~ '^[0-9]{40}$' AS seq_40_digits,
       error_code, error_message
FROM batch ORDER BY ord;
-- records of one put_records call to the same shard are numbered in input order
SELECT shard_id, bool_and(sequence_number > prev) AS increasing
FROM (SELECT shard_id, sequence_number,
             lag(sequence_number) OVER (PARTITION BY shard_id ORDER BY ord) AS prev
      FROM batch) x
WHERE prev IS NOT NULL GROUP BY shard_id ORDER BY shard_id;
INSERT INTO puts (stream_name, pk, data, shard_id, sequence_number)
SELECT 'api_one', 'b' || ord, (ARRAY['\x01', '\x02', '\x03', '\x', '\x05', '\x06']::bytea[])[ord],
       shard_id, sequence_number
FROM batch ORDER BY ord;

-- a put_records call without explicit hash keys
INSERT INTO puts (stream_name, pk, data, shard_id, sequence_number)
SELECT 'api_one', 'c' || ord, convert_to('c' || ord, 'UTF8'), shard_id, sequence_number
FROM stream.put_records('api_one', ARRAY['c1', 'c2', 'c3'],
                        ARRAY[convert_to('c1', 'UTF8'), convert_to('c2', 'UTF8'), convert_to('c3', 'UTF8')])
     WITH ORDINALITY AS r(shard_id, sequence_number, error_code, error_message, ord);

-- 500 records in one call is allowed
SELECT count(*) AS rows, count(*) FILTER (WHERE error_code IS NULL AND sequence_number IS NOT NULL) AS ok
FROM stream.put_records('api_two', array_fill('many'::text, ARRAY[500]), array_fill('\x00'::bytea, ARRAY[500]));

-- sequence numbers: 40 digits, unique, strictly increasing within a shard in put order,
-- layout '4' + 19-digit seq + 10-digit stream id + 10-digit shard index
SELECT shard_id, count(*) AS records,
       count(DISTINCT sequence_number) AS distinct_seqs,
       bool_and(sequence_number ~ '^4[0-9]{39}$') AS format_ok,
       bool_and(right(sequence_number, 10)::int = substr(shard_id, 9)::int) AS shard_ix_ok,
       count(DISTINCT substr(sequence_number, 21, 10)) AS stream_ids
FROM puts GROUP BY shard_id ORDER BY shard_id;
SELECT count(*) AS out_of_order
FROM (SELECT sequence_number, lag(sequence_number) OVER (PARTITION BY shard_id ORDER BY n) AS prev
      FROM puts) x
WHERE prev IS NOT NULL AND sequence_number <= prev;
-- the stream id part is the same on both shards
SELECT count(DISTINCT substr(sequence_number, 21, 10)) AS stream_ids_api_one FROM puts;
-- text order is numeric order within a shard
SELECT bool_and((sequence_number::numeric > prev::numeric) = (sequence_number > prev)) AS text_order_is_numeric
FROM (SELECT sequence_number, lag(sequence_number) OVER (ORDER BY n) AS prev FROM puts) x
WHERE prev IS NOT NULL;

--
-- 3. iterators and reads
--
CREATE FUNCTION pg_temp.seqs(recs stream.record[]) RETURNS text[]
LANGUAGE sql AS $$ SELECT array(SELECT r.sequence_number FROM unnest(recs) WITH ORDINALITY r(sequence_number, a, p, d, o) ORDER BY o) $$;
CREATE FUNCTION pg_temp.expected(shard text, from_n int DEFAULT 0) RETURNS text[]
LANGUAGE sql AS $$ SELECT array(SELECT sequence_number FROM puts WHERE stream_name = 'api_one' AND shard_id = shard AND n >= from_n ORDER BY sequence_number) $$;

-- TRIM_HORIZON: every record of the shard, in order, with key/data/arrival
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

-- LATEST sees only records written after the iterator was taken
SELECT stream.get_shard_iterator('api_one', 'shardId-000000000001', 'LATEST') AS latest \gset
SELECT cardinality(records) AS before_put FROM stream.get_records(:'latest');
INSERT INTO puts (stream_name, pk, data, shard_id, sequence_number)
SELECT 'api_one', 'after-latest', '\x99', * FROM stream.put_record('api_one', 'after-latest', '\x99', '340282366920938463463374607431768211455');
SELECT cardinality(records) AS after_put,
       (records[1]).partition_key AS pk,
       (records[1]).data AS data,
       millis_behind_latest
FROM stream.get_records(:'latest');

-- AT_SEQUENCE_NUMBER includes, AFTER_SEQUENCE_NUMBER excludes the given record
SELECT (pg_temp.expected('shardId-000000000000'))[3] AS s3 \gset
SELECT pg_temp.seqs(records) = (pg_temp.expected('shardId-000000000000'))[3:] AS at_ok,
       (records[1]).sequence_number = :'s3' AS starts_at_given
FROM stream.get_records(stream.get_shard_iterator('api_one', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', :'s3'));
SELECT pg_temp.seqs(records) = (pg_temp.expected('shardId-000000000000'))[4:] AS after_ok,
       :'s3' <> ALL (pg_temp.seqs(records)) AS excludes_given
FROM stream.get_records(stream.get_shard_iterator('api_one', 'shardId-000000000000', 'AFTER_SEQUENCE_NUMBER', :'s3'));
-- AFTER the last record: nothing yet, caught up
SELECT cardinality(records) AS n_records, millis_behind_latest
FROM stream.get_records(stream.get_shard_iterator('api_one', 'shardId-000000000000', 'AFTER_SEQUENCE_NUMBER',
                        (SELECT max(sequence_number) FROM puts WHERE stream_name = 'api_one' AND shard_id = 'shardId-000000000000')));
-- AT the first record = everything
SELECT pg_temp.seqs(records) = pg_temp.expected('shardId-000000000000') AS at_first_ok
FROM stream.get_records(stream.get_shard_iterator('api_one', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER',
                        (SELECT min(sequence_number) FROM puts WHERE stream_name = 'api_one' AND shard_id = 'shardId-000000000000')));

-- AT_TIMESTAMP: first record with arrival >= timestamp
SELECT pg_sleep(0.02);
SELECT clock_timestamp() AS ts_mid \gset
SELECT pg_sleep(0.02);
INSERT INTO puts (stream_name, pk, data, shard_id, sequence_number)
SELECT 'api_one', 'ts1', '\x7101', * FROM stream.put_record('api_one', 'ts1', '\x7101', '0');
INSERT INTO puts (stream_name, pk, data, shard_id, sequence_number)
SELECT 'api_one', 'ts2', '\x7102', * FROM stream.put_record('api_one', 'ts2', '\x7102', '0');
SELECT array(SELECT (r).partition_key FROM unnest(records) r) AS keys_after_ts
FROM stream.get_records(stream.get_shard_iterator('api_one', 'shardId-000000000000', 'AT_TIMESTAMP', NULL, :'ts_mid'));
-- a timestamp before the stream existed reads from the trim horizon
SELECT pg_temp.seqs(records) = pg_temp.expected('shardId-000000000000') AS old_ts_is_trim_horizon
FROM stream.get_records(stream.get_shard_iterator('api_one', 'shardId-000000000000', 'AT_TIMESTAMP', NULL, '2000-01-01 00:00:00+00'));
-- a timestamp after the last record (but not in the future): nothing
SELECT pg_sleep(0.02);
SELECT cardinality(records) AS n_records, millis_behind_latest
FROM stream.get_records(stream.get_shard_iterator('api_one', 'shardId-000000000000', 'AT_TIMESTAMP', NULL, now()));

-- read_shard (psql-friendly): defaults to TRIM_HORIZON
SELECT array_agg(sequence_number ORDER BY sequence_number) = pg_temp.expected('shardId-000000000001') AS read_shard_ok,
       count(*) AS n
FROM stream.read_shard('api_one', 'shardId-000000000001');
SELECT array_agg(r.sequence_number) = pg_temp.expected('shardId-000000000000') AS returned_in_order
FROM stream.read_shard('api_one', 'shardId-000000000000') r;
SELECT partition_key, data FROM stream.read_shard('api_one', 'shardId-000000000001');
SELECT partition_key FROM stream.read_shard('api_one', 'shardId-000000000000', 'TRIM_HORIZON', NULL, NULL, 3);
SELECT partition_key FROM stream.read_shard('api_one', 'shardId-000000000000', 'AFTER_SEQUENCE_NUMBER', :'s3', NULL, 2);
SELECT partition_key FROM stream.read_shard('api_one', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', :'s3', NULL, 1);
SELECT partition_key FROM stream.read_shard('api_one', 'shardId-000000000000', 'AT_TIMESTAMP', NULL, :'ts_mid');
SELECT count(*) AS latest_is_empty FROM stream.read_shard('api_one', 'shardId-000000000000', 'LATEST');
SELECT count(*) AS api_two_records FROM stream.read_shard('api_two', 'shardId-000000000000');
-- shard ids are parsed leniently, as by Kinesis: '<anything>-<digits>' or bare digits
SELECT sid, array(SELECT partition_key FROM stream.read_shard('api_one', sid)) =
            array(SELECT partition_key FROM stream.read_shard('api_one', 'shardId-000000000001')) AS same_as_shard_1
FROM unnest(ARRAY['shardId-1', 'foo-1', '1', 'shardId-00001']) sid;

--
-- 4. transactions: rolled back puts never appear, own uncommitted puts are not read
--
SELECT count(*) AS before_tx FROM stream.read_shard('api.three-3_x', 'shardId-000000000000');
BEGIN;
SELECT shard_id FROM stream.put_record('api.three-3_x', 'rolled-back', '\x00');
ROLLBACK;
SELECT count(*) AS after_rollback FROM stream.read_shard('api.three-3_x', 'shardId-000000000000');

BEGIN;
SELECT shard_id FROM stream.put_record('api.three-3_x', 'kept-1', '\x01');
SAVEPOINT sp;
SELECT shard_id FROM stream.put_record('api.three-3_x', 'discarded', '\x02');
SELECT shard_id FROM stream.put_records('api.three-3_x', ARRAY['discarded-2', 'discarded-3'], ARRAY['\x03', '\x04']::bytea[]);
ROLLBACK TO SAVEPOINT sp;
SELECT shard_id FROM stream.put_record('api.three-3_x', 'kept-2', '\x05');
-- own uncommitted puts are in flight: not returned
SELECT count(*) AS own_uncommitted_visible FROM stream.read_shard('api.three-3_x', 'shardId-000000000000');
COMMIT;
SELECT partition_key, data FROM stream.read_shard('api.three-3_x', 'shardId-000000000000');

-- a failed transaction leaves nothing behind either, and later puts are readable
BEGIN;
SELECT shard_id FROM stream.put_record('api.three-3_x', 'aborted', '\x06');
SELECT 1 / 0;
COMMIT;
SELECT shard_id FROM stream.put_record('api.three-3_x', 'kept-3', '\x07');
SELECT partition_key FROM stream.read_shard('api.three-3_x', 'shardId-000000000000');
-- sequence numbers of committed records still increase
SELECT bool_and(sequence_number > prev) AS increasing
FROM (SELECT sequence_number, lag(sequence_number) OVER (ORDER BY o) AS prev
      FROM stream.read_shard('api.three-3_x', 'shardId-000000000000') WITH ORDINALITY r(sequence_number, a, p, d, o)) x
WHERE prev IS NOT NULL;

--
-- 5. retention period
--
SELECT stream.increase_stream_retention_period('api_one', 48);
SELECT stream.describe_stream_summary('api_one') -> 'RetentionPeriodHours' AS retention;
SELECT stream.increase_stream_retention_period('api_one', 48);  -- same value is allowed
SELECT stream.increase_stream_retention_period('api_one', 8760);
SELECT stream.describe_stream('api_one') -> 'RetentionPeriodHours' AS retention;
SELECT stream.decrease_stream_retention_period('api_one', 100);
SELECT stream.describe_stream_summary('api_one') -> 'RetentionPeriodHours' AS retention;
SELECT stream.decrease_stream_retention_period('api_one', 24);
SELECT stream.describe_stream_summary('api_one') -> 'RetentionPeriodHours' AS retention;
-- records are still there after retention changes
SELECT count(*) AS records_shard0 FROM stream.read_shard('api_one', 'shardId-000000000000');

--
-- 6. delete
--
SELECT stream.delete_stream('api_one');
SELECT stream.delete_stream('api_two');
SELECT stream.delete_stream('api.three-3_x');
SELECT count(*) AS api_streams_left FROM stream.list_streams() WHERE stream_name LIKE 'api%';
-- storage of the deleted streams is gone
SELECT count(*) - :data_relations_at_start AS data_relations_left
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'stream_data';
-- a deleted name can be created again and starts empty
SELECT stream.create_stream('api_one', 1);
SELECT count(*) AS records FROM stream.read_shard('api_one', 'shardId-000000000000');
SELECT stream.delete_stream('api_one');
