--
-- iterators: GetShardIterator's types and where each starts (LATEST,
-- AT/AFTER_SEQUENCE_NUMBER, AT_TIMESTAMP; TRIM_HORIZON in get_records.sql),
-- read_shard with each; shard ids; malformed, tampered and stale iterators
-- and starting sequence numbers.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS stream;
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/fixtures/api_streams.psql

--
-- 1. where each type starts
--
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

--
-- 2. read_shard with each type
--
SELECT partition_key FROM stream.read_shard('api_one', 'shardId-000000000000', 'AFTER_SEQUENCE_NUMBER', :'s3', NULL, 2);
SELECT partition_key FROM stream.read_shard('api_one', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', :'s3', NULL, 1);
SELECT partition_key FROM stream.read_shard('api_one', 'shardId-000000000000', 'AT_TIMESTAMP', NULL, :'ts_mid');
SELECT count(*) AS latest_is_empty FROM stream.read_shard('api_one', 'shardId-000000000000', 'LATEST');
-- shard ids are parsed leniently, as by Kinesis: '<anything>-<digits>' or bare digits
SELECT sid, array(SELECT partition_key FROM stream.read_shard('api_one', sid)) =
            array(SELECT partition_key FROM stream.read_shard('api_one', 'shardId-000000000001')) AS same_as_shard_1
FROM unnest(ARRAY['shardId-1', 'foo-1', '1', 'shardId-00001']) sid;

SELECT stream.delete_stream('api_one');
SELECT stream.delete_stream('api_two');
SELECT stream.delete_stream('api.three-3_x');

\i :abs_srcdir/sql/fixtures/err_streams.psql

--
-- 3. unknown shards
--
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000002', 'TRIM_HORIZON');
SELECT stream.get_shard_iterator('err_s', 'shardId-999999999999', 'TRIM_HORIZON');
SELECT stream.get_shard_iterator('err_s', 'garbage', 'TRIM_HORIZON');
SELECT stream.get_shard_iterator('err_s', '', 'TRIM_HORIZON');
SELECT * FROM stream.read_shard('err_s', 'shardId-000000000002');

--
-- 4. bad iterators: InvalidArgumentException, never a read
--
SELECT * FROM stream.get_records('garbage');
SELECT * FROM stream.get_records('');
SELECT * FROM stream.get_records(repeat('A', 600));
SELECT * FROM stream.get_records(encode(convert_to(repeat('x', 96), 'UTF8'), 'base64'));
SELECT * FROM stream.get_records(left(:'it', length(:'it') - 8));
SELECT * FROM stream.get_records(left(:'it', length(:'it') / 2));
SELECT * FROM stream.get_records(:'it' || 'AAAA');
SELECT * FROM stream.get_records(upper(:'it'));
SELECT * FROM stream.get_records(reverse(:'it'));
-- flipping any single character (leaving out the last 3, which may be base64 padding bits)
SELECT count(*) AS positions,
       count(*) FILTER (WHERE res LIKE '22023 InvalidArgumentException:%') AS rejected
FROM (SELECT pg_temp.try(format('SELECT * FROM stream.get_records(%L)',
               overlay(:'it' PLACING CASE WHEN substr(:'it', p, 1) = 'A' THEN 'B' ELSE 'A' END FROM p FOR 1))) AS res
      FROM generate_series(1, length(:'it') - 3) p) x;
-- the iterator itself still works
SELECT cardinality(records) AS original_iterator_records FROM stream.get_records(:'it');


--
-- 5. iterator types and starting sequence numbers
--
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'TRIM_HORIZON', :'seq_s0');
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'LATEST', :'seq_s0');
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER');
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AFTER_SEQUENCE_NUMBER');
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', NULL);
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'BOGUS');
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'trim_horizon');
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', '');
SELECT * FROM stream.read_shard('err_s', 'shardId-000000000000', 'LATEST', :'seq_s0');
SELECT * FROM stream.read_shard('err_s', 'shardId-000000000000', 'AFTER_SEQUENCE_NUMBER');
-- malformed sequence numbers
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', 'abc');
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', '');
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', '-1');
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', '12345');
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', repeat('9', 40));
-- a sequence number of another shard / another stream
SELECT pg_temp.try(format($q$SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', %L)$q$, :'seq_s1'));
SELECT pg_temp.try(format($q$SELECT stream.get_shard_iterator('err_s', 'shardId-000000000001', 'AFTER_SEQUENCE_NUMBER', %L)$q$, :'seq_s0'));
SELECT pg_temp.try(format($q$SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', %L)$q$, :'seq_other'));
SELECT pg_temp.try(format($q$SELECT * FROM stream.read_shard('err_other', 'shardId-000000000000', 'AFTER_SEQUENCE_NUMBER', %L)$q$, :'seq_s0'));
-- AT_TIMESTAMP without a timestamp, or in the future
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_TIMESTAMP');
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_TIMESTAMP', NULL, NULL);
SELECT pg_temp.try($q$SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_TIMESTAMP', NULL, now() + interval '1 hour')$q$);
SELECT pg_temp.try($q$SELECT * FROM stream.read_shard('err_s', 'shardId-000000000000', 'AT_TIMESTAMP', NULL, now() + interval '1 day')$q$);
-- 'infinity' is in the future too; the message must show sane values (infinity is named as such)
SELECT split_part(res, ':', 1) AS error,
       res ~ 'timestampInMillis: (<ms>|infinity), currentTimestampInMillis: <ms>$' AS millis_ok
FROM pg_temp.try($q$SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_TIMESTAMP', NULL, 'infinity')$q$) res;


--
-- 6. deleted streams: iterators and sequence numbers of a former incarnation
--
SELECT stream.create_stream('err_gone', 1);
SELECT count(*) FROM stream.put_record('err_gone', 'g', '\x00');
SELECT stream.get_shard_iterator('err_gone', 'shardId-000000000000', 'TRIM_HORIZON') AS gone_it \gset
SELECT sequence_number AS gone_seq FROM stream.read_shard('err_gone', 'shardId-000000000000') \gset
SELECT stream.delete_stream('err_gone');
SELECT * FROM stream.get_records(:'gone_it');
SELECT stream.delete_stream('err_gone');
SELECT stream.describe_stream('err_gone');
SELECT stream.create_stream('err_gone', 1);
SELECT count(*) FROM stream.put_record('err_gone', 'new', '\x00');
-- the old iterator does not read the new stream of the same name
SELECT pg_temp.try(format('SELECT * FROM stream.get_records(%L)', :'gone_it')) LIKE '%Exception:%' AS old_iterator_rejected;
SELECT pg_temp.try(format($q$SELECT stream.get_shard_iterator('err_gone', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', %L)$q$, :'gone_seq'));
SELECT stream.delete_stream('err_gone');


--
-- 7. shard ids and sequence numbers that break the members' constraints
--
-- shard ids: the digits after the last '-', any number, at most 2147483647 (as Kinesis)
SELECT stream.get_shard_iterator('err_s', 'shardId-0000000000001', 'TRIM_HORIZON') IS NOT NULL AS thirteen_digits_are_shard_1;
SELECT count(*) AS shard_1_records FROM stream.read_shard('err_s', 'shardId-00000000000000000000001');
SELECT count(*) AS shard_1_records FROM stream.read_shard('err_s', 'x-1');
SELECT stream.get_shard_iterator('err_s', 'shardId-99999999999', 'TRIM_HORIZON');
SELECT stream.get_shard_iterator('err_s', 'shardId-2147483648', 'TRIM_HORIZON');
SELECT stream.get_shard_iterator('err_s', 'shardId-2147483647', 'TRIM_HORIZON');
SELECT stream.get_shard_iterator('err_s', 'shardId-', 'TRIM_HORIZON');
-- shard ids that break the member's constraints: ValidationException
SELECT stream.get_shard_iterator('err_s', repeat('1', 129), 'TRIM_HORIZON');
SELECT stream.get_shard_iterator('err_s', 'shardId 1', 'TRIM_HORIZON');
SELECT stream.get_shard_iterator('err_s', 'shardId-' || repeat('0', 119) || '1', 'TRIM_HORIZON') IS NOT NULL AS shard_id_of_128_chars_ok;
-- a malformed sequence number is a ValidationException even where none is wanted
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'LATEST', '01');
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', repeat('9', 130));
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', repeat('9', 129));

\i :abs_srcdir/sql/fixtures/err_streams_end.psql
