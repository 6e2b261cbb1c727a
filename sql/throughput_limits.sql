--
-- throughput_limits: Kinesis' per-shard limits with stream.enforce_shard_limits
-- (1 MiB and 1,000 records per second written, 2 MiB and 5 get_records calls
-- per second read).  The token buckets run on the test clock
-- (stream.throttle_test_clock), so every count below is exact: nothing
-- refills unless the test moves the clock.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS stream;
\set VERBOSITY terse

\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/fixtures/try.psql

-- n records of one shard: keys k<i>, data of size bytes each
CREATE FUNCTION pg_temp.put(s text, n int, size int DEFAULT 1, ehk text DEFAULT NULL)
RETURNS TABLE(admitted bigint, refused bigint, messages text) LANGUAGE sql AS $$
  SELECT count(*) FILTER (WHERE r.error_code IS NULL AND r.sequence_number IS NOT NULL),
         count(*) FILTER (WHERE r.error_code = 'ProvisionedThroughputExceededException'
                            AND r.shard_id IS NULL AND r.sequence_number IS NULL),
         string_agg(DISTINCT r.error_message, ' | ')
    FROM stream.put_records(s, ARRAY(SELECT 'k' || i FROM generate_series(1, n) i),
                            ARRAY(SELECT convert_to(repeat('x', size), 'UTF8') FROM generate_series(1, n)),
                            CASE WHEN ehk IS NULL THEN NULL ELSE ARRAY(SELECT ehk FROM generate_series(1, n)) END) r
$$;

-- every record of a shard in order, and whether their numbers leave no gap
CREATE FUNCTION pg_temp.numbers(s text, shard text) RETURNS text LANGUAGE sql AS $$
  SELECT format('%s records, gaps %s', count(*),
                count(*) FILTER (WHERE d IS NOT NULL AND d <> 1))
    FROM (SELECT (p).seq - lag((p).seq) OVER (ORDER BY (p).seq) AS d
            FROM (SELECT stream_internal._sequence_parts(sequence_number) AS p
                    FROM stream.read_shard(s, shard)) x) y
$$;

-- off by default: nothing is refused
SHOW stream.enforce_shard_limits;
SET stream.throttle_test_clock = 0;
SELECT stream.create_stream('tl_off', 1);
SELECT * FROM pg_temp.put('tl_off', 500);
SELECT * FROM pg_temp.put('tl_off', 500);
SELECT * FROM pg_temp.put('tl_off', 500);

SET stream.enforce_shard_limits = on;

-- 1,000 records per second: 600 + 600 at one instant admit exactly 1,000
SELECT stream.create_stream('tl_records', 1);
SELECT * FROM pg_temp.put('tl_records', 500);
SELECT * FROM pg_temp.put('tl_records', 100);
SELECT * FROM pg_temp.put('tl_records', 500);
SELECT * FROM pg_temp.put('tl_records', 100);
-- put_record is refused with the exception, and takes no number
SELECT pg_temp.try($$SELECT stream.put_record('tl_records', 'x', '\x01')$$);
-- 250 ms later: 250 more
SET stream.throttle_test_clock = 250;
SELECT * FROM pg_temp.put('tl_records', 300);
-- a clock set back refills nothing
SET stream.throttle_test_clock = 100;
SELECT * FROM pg_temp.put('tl_records', 1);
SET stream.throttle_test_clock = 101;
SELECT * FROM pg_temp.put('tl_records', 5);
-- the refused records left no gap a reader would wait on
SELECT pg_temp.numbers('tl_records', 'shardId-000000000000');

-- 1 MiB per second, partition key included: records of 100,000 bytes with
-- keys k1..k12: the first ten take 9 * 100,002 + 100,003 = 1,000,021 bytes
SET stream.throttle_test_clock = 0;
SELECT stream.create_stream('tl_bytes', 1);
SELECT * FROM pg_temp.put('tl_bytes', 12, 100000);
-- what is left, 1,048,576 - 1,000,021 = 48,555 bytes, takes a record of
-- exactly that size, not one byte more; then not even a key without data
SELECT pg_temp.try($$SELECT stream.put_record('tl_bytes', 'big', convert_to(repeat('y', 48553), 'UTF8'))$$);
SELECT pg_temp.try($$SELECT stream.put_record('tl_bytes', 'ok', convert_to(repeat('y', 48553), 'UTF8'))$$);
SELECT pg_temp.try($$SELECT stream.put_record('tl_bytes', 'z', '')$$);
SELECT pg_temp.numbers('tl_bytes', 'shardId-000000000000');

-- limits are per shard: a hot shard is refused, its neighbour is not
SET stream.throttle_test_clock = 0;
SELECT stream.create_stream('tl_two', 2);
SELECT * FROM pg_temp.put('tl_two', 500, 1, '0');
SELECT * FROM pg_temp.put('tl_two', 500, 1, '0');
SELECT * FROM pg_temp.put('tl_two', 500, 1, '0');
SELECT * FROM pg_temp.put('tl_two', 500, 1, '340282366920938463463374607431768211455');
-- one request over both shards: the hot shard's records fail, the others succeed, in input order
SELECT ordinality, r.shard_id IS NOT NULL AS stored, r.error_code
  FROM stream.put_records('tl_two', ARRAY['a', 'b', 'c', 'd'], ARRAY['\x01', '\x02', '\x03', '\x04']::bytea[],
                          ARRAY['0', '340282366920938463463374607431768211455', '1', '340282366920938463463374607431768211454'])
       WITH ORDINALITY r;
SELECT pg_temp.numbers('tl_two', 'shardId-000000000000'), pg_temp.numbers('tl_two', 'shardId-000000000001');

-- reads: 5 get_records calls per second per shard
SET stream.throttle_test_clock = 0;
SELECT stream.create_stream('tl_read', 1);
SELECT * FROM pg_temp.put('tl_read', 10);
SELECT stream.get_shard_iterator('tl_read', 'shardId-000000000000', 'TRIM_HORIZON') AS it \gset
\set it_read :it
SELECT cardinality(records) FROM stream.get_records(:'it', 2);
SELECT cardinality(records) FROM stream.get_records(:'it', 2);
SELECT cardinality(records) FROM stream.get_records(:'it', 2);
SELECT count(*) FROM stream.read_shard('tl_read', 'shardId-000000000000');
SELECT cardinality(records) FROM stream.get_records(:'it', 2);
SELECT pg_temp.try(format('SELECT stream.get_records(%L, 2)', :'it'));
SELECT pg_temp.try($$SELECT count(*) FROM stream.read_shard('tl_read', 'shardId-000000000000')$$);
-- a fifth of a second later: one call more
SET stream.throttle_test_clock = 200;
SELECT cardinality(records) FROM stream.get_records(:'it', 2);
SELECT pg_temp.try(format('SELECT stream.get_records(%L, 2)', :'it'));

-- 2 MiB per second: a call may start while any byte is left, and a large
-- read is paid off afterwards.  Three records of 1,000,000 bytes (key
-- 'k1'..'k3': 3,000,006 bytes) leave 2,097,152 - 3,000,006 = -902,854
-- bytes; at 2 MiB/s that is back above zero after 430.52 ms.
SET stream.throttle_test_clock = 0;
SELECT stream.create_stream('tl_read_bytes', 1);
SELECT * FROM pg_temp.put('tl_read_bytes', 1, 1000000);
SET stream.throttle_test_clock = 1000;
SELECT count(*) FROM stream.put_record('tl_read_bytes', 'k2', convert_to(repeat('x', 1000000), 'UTF8'));
SET stream.throttle_test_clock = 2000;
SELECT count(*) FROM stream.put_record('tl_read_bytes', 'k3', convert_to(repeat('x', 1000000), 'UTF8'));
SELECT stream.get_shard_iterator('tl_read_bytes', 'shardId-000000000000', 'TRIM_HORIZON') AS it \gset
SELECT cardinality(records) FROM stream.get_records(:'it', 10);
SELECT pg_temp.try(format('SELECT stream.get_records(%L, 10)', :'it'));
SET stream.throttle_test_clock = 2430;
SELECT pg_temp.try(format('SELECT stream.get_records(%L, 10)', :'it'));
SET stream.throttle_test_clock = 2431;
SELECT cardinality(records) FROM stream.get_records(:'it', 10);

-- enhanced fan-out is not limited by the shared read limits
SELECT stream.register_stream_consumer('tl_read', 'tl_consumer') IS NOT NULL;
SET stream.throttle_test_clock = 200;
SELECT pg_temp.try(format('SELECT stream.get_records(%L, 2)', :'it_read'));
SELECT cardinality(records)
  FROM stream.subscribe_to_shard('tl_read', 'tl_consumer', 'shardId-000000000000', 'TRIM_HORIZON', wait_timeout => '0');

-- only superusers may switch the limits or the test clock
CREATE ROLE tl_user;
SET ROLE tl_user;
SELECT pg_temp.try('SET stream.enforce_shard_limits = off');
SELECT pg_temp.try('SET stream.throttle_test_clock = 99999');
RESET ROLE;
DROP ROLE tl_user;

RESET stream.enforce_shard_limits;
RESET stream.throttle_test_clock;
SELECT stream.delete_stream(s, true)
  FROM unnest(ARRAY['tl_off', 'tl_records', 'tl_bytes', 'tl_two', 'tl_read', 'tl_read_bytes']) s;
