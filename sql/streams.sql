--
-- streams: CreateStream, ListStreams, DescribeStream(Summary), DeleteStream;
-- stream names, shard counts, duplicate and unknown streams.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS stream;
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR

SELECT count(*) AS data_relations_at_start FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'stream_data' \gset
\i :abs_srcdir/sql/fixtures/api_streams.psql

--
-- 1. list / describe (the streams are created by the fixture)
--
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
-- 2. delete
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

\i :abs_srcdir/sql/fixtures/err_streams.psql

--
-- 3. stream names: [a-zA-Z0-9_.-]{1,128}
--
SELECT stream.create_stream('', 1);
SELECT stream.create_stream(repeat('a', 129), 1);
SELECT stream.create_stream('has space', 1);
SELECT stream.create_stream('slash/name', 1);
SELECT stream.create_stream('semi;colon', 1);
SELECT stream.create_stream('quote''s', 1);
SELECT stream.create_stream('star*', 1);
SELECT stream.create_stream('ümlaut', 1);
SELECT stream.create_stream(E'tab\tname', 1);
SELECT stream.create_stream(E'new\nline', 1);
SELECT stream.describe_stream(repeat('a', 129));
SELECT stream.delete_stream('has space');
-- 128 characters and all allowed characters are fine
SELECT stream.create_stream(repeat('a', 127) || 'Z', 1);
SELECT length(stream_name) FROM stream.list_streams() WHERE stream_name LIKE 'aaaa%';
SELECT stream.delete_stream(repeat('a', 127) || 'Z');
SELECT stream.create_stream('Az09_.-', 1);
SELECT stream.delete_stream('Az09_.-');

--
-- 4. duplicate and unknown streams: every action names the missing stream
--
SELECT stream.create_stream('err_s', 1);
SELECT stream.create_stream('err_s', 2, 48);
SELECT stream.describe_stream('err_nope');
SELECT stream.describe_stream_summary('err_nope');
SELECT stream.delete_stream('err_nope');
SELECT * FROM stream.list_shards('err_nope');
SELECT * FROM stream.put_record('err_nope', 'k', '\x00');
SELECT * FROM stream.put_records('err_nope', ARRAY['k'], ARRAY['\x00']::bytea[]);
SELECT stream.get_shard_iterator('err_nope', 'shardId-000000000000', 'TRIM_HORIZON');
SELECT * FROM stream.read_shard('err_nope', 'shardId-000000000000');
SELECT stream.increase_stream_retention_period('err_nope', 48);
SELECT stream.decrease_stream_retention_period('err_nope', 24);
SELECT stream.grant_stream_access('err_nope', 'postgres', 'read');
-- names are case sensitive
SELECT stream.describe_stream('ERR_S');

--
-- 5. shard count
--
SELECT stream.create_stream('err_new', 0);
SELECT stream.create_stream('err_new', -1);

\i :abs_srcdir/sql/fixtures/err_streams_end.psql
