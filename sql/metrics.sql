--
-- metrics: enable/disable_enhanced_monitoring as Kinesis answers them, and
-- the per-minute metrics equal to what the test put and read - sizes of 0,
-- 1, 126, 127 bytes, TOASTed ones, multibyte keys - at stream and shard
-- level, throttled records and calls included; who may see them.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS stream;
\set VERBOSITY terse

\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/fixtures/try.psql

SELECT stream.create_stream('mt', 3);

-- EnableEnhancedMonitoring: Kinesis' validation and answer
SELECT pg_temp.try($$SELECT stream.enable_enhanced_monitoring('mt', NULL)$$);
SELECT pg_temp.try($$SELECT stream.enable_enhanced_monitoring('mt', '{}')$$);
SELECT pg_temp.try($$SELECT stream.enable_enhanced_monitoring('mt', ARRAY['IncomingBytes', 'Bogus'])$$);
SELECT pg_temp.try($$SELECT stream.enable_enhanced_monitoring('mt', ARRAY['IncomingBytes', NULL])$$);
SELECT pg_temp.try($$SELECT stream.enable_enhanced_monitoring('mt', ARRAY['ALL','ALL','ALL','ALL','ALL','ALL','ALL','ALL'])$$);
SELECT pg_temp.try($$SELECT stream.enable_enhanced_monitoring('nope', ARRAY['ALL'])$$);
SELECT stream.describe_stream('mt') -> 'EnhancedMonitoring';
SELECT stream.enable_enhanced_monitoring('mt', ARRAY['OutgoingRecords', 'IncomingBytes']);
SELECT stream.enable_enhanced_monitoring('mt', ARRAY['IncomingRecords', 'IncomingBytes']);
SELECT stream.disable_enhanced_monitoring('mt', ARRAY['IncomingBytes']);
SELECT stream.disable_enhanced_monitoring('mt', ARRAY['ALL']);
SELECT stream.enable_enhanced_monitoring('mt', ARRAY['ALL']);
SELECT stream.disable_enhanced_monitoring('mt', ARRAY['OutgoingBytes', 'IteratorAgeMilliseconds', 'ReadProvisionedThroughputExceeded']);
SELECT stream.describe_stream('mt') -> 'EnhancedMonitoring', stream.describe_stream_summary('mt') -> 'EnhancedMonitoring';
-- administrators only, like the other stream settings
CREATE ROLE mt_reader;
CREATE ROLE mt_stranger;
SET ROLE mt_reader;
SELECT pg_temp.try($$SELECT stream.enable_enhanced_monitoring('mt', ARRAY['ALL'])$$);
SELECT pg_temp.try($$SELECT stream.disable_enhanced_monitoring('mt', ARRAY['ALL'])$$);
RESET ROLE;

-- Records of every awkward size: data of 0, 1, 126, 127, 128, 2,000
-- (TOAST threshold), 8,200 and 100,000 bytes (out of line; compressible)
-- and 75,200 bytes that do not compress, keys of one byte, multibyte keys
-- and a key of 256 two-byte characters; through put_records and put_record.
CREATE TEMP TABLE mt_in AS
SELECT i, k, d, stream.hash_key(k) AS h
  FROM (SELECT i,
               (ARRAY['a', 'ключ', 'é-' || i, repeat('é', 256), 'k' || i, '鍵' || i])[1 + i % 6] AS k,
               CASE WHEN i % 9 = 8
                    THEN decode((SELECT string_agg(md5(i || '-' || j), '') FROM generate_series(1, 4700) j), 'hex')
                    ELSE convert_to(repeat(chr(65 + i % 26), (ARRAY[0, 1, 126, 127, 128, 2000, 8200, 100000])[1 + i % 8]), 'UTF8') END AS d
          FROM generate_series(1, 180) i) x;
SELECT count(*), sum(octet_length(k) + octet_length(d)) AS bytes FROM mt_in;
SELECT count(*) FROM mt_in, LATERAL stream.put_records('mt', ARRAY[mt_in.k], ARRAY[mt_in.d]) WHERE i <= 60;
SELECT count(*) FROM stream.put_records('mt', ARRAY(SELECT k FROM mt_in WHERE i > 60 AND i <= 170 ORDER BY i),
                                        ARRAY(SELECT d FROM mt_in WHERE i > 60 AND i <= 170 ORDER BY i));
SELECT count(*) FROM mt_in, LATERAL stream.put_record('mt', mt_in.k, mt_in.d) WHERE i > 170;
-- a put that rolls back is counted too: it used the shard's write capacity
BEGIN;
SELECT count(*) FROM stream.put_record('mt', 'rolled back', '\x0102');
ROLLBACK;

-- every record read once: get_records on shard 0, read_shard on the others
SELECT stream.get_shard_iterator('mt', 'shardId-000000000000', 'TRIM_HORIZON') AS it \gset
SELECT cardinality(records) > 0 FROM stream.get_records(:'it', 10000);
SELECT count(*) > 0 FROM stream.read_shard('mt', 'shardId-000000000001');
SELECT count(*) > 0 FROM stream.read_shard('mt', 'shardId-000000000002');

SELECT stream.flush_metrics();

-- the stream's sums equal what was put and read (over however many minutes the test took)
SELECT sum(incoming_records) AS in_records, sum(incoming_bytes) AS in_bytes,
       sum(outgoing_records) AS out_records, sum(outgoing_bytes) AS out_bytes,
       sum(write_provisioned_throughput_exceeded) AS write_throttled,
       sum(read_provisioned_throughput_exceeded) AS read_throttled,
       bool_or(iterator_age_milliseconds >= 0) AS iterator_age
  FROM stream.stream_metrics WHERE stream_name = 'mt';
SELECT (SELECT count(*) + 1 FROM mt_in) AS expected_records,
       (SELECT sum(octet_length(k) + octet_length(d)) + octet_length('rolled back') + 2 FROM mt_in) AS expected_bytes;

-- per shard, only the metrics enabled (IncomingBytes, IncomingRecords,
-- OutgoingRecords, WriteProvisionedThroughputExceeded), each shard's own
WITH expected AS (
    SELECT l.shard_id, count(*) AS records, sum(octet_length(k) + octet_length(d)) AS bytes
      FROM mt_in JOIN stream.list_shards('mt') l ON mt_in.h BETWEEN l.starting_hash_key AND l.ending_hash_key
     GROUP BY l.shard_id
), got AS (
    SELECT shard_id, sum(incoming_records) AS in_records, sum(incoming_bytes) AS in_bytes,
           sum(outgoing_records) AS out_records, count(outgoing_bytes) AS out_bytes_rows,
           sum(write_provisioned_throughput_exceeded) AS write_throttled,
           count(read_provisioned_throughput_exceeded) AS read_throttled_rows,
           count(iterator_age_milliseconds) AS age_rows
      FROM stream.shard_metrics WHERE stream_name = 'mt' GROUP BY shard_id
)
SELECT e.shard_id, g.in_records - e.records AS records_diff, g.in_bytes - e.bytes AS bytes_diff,
       g.out_records - e.records AS read_diff, g.out_bytes_rows, g.write_throttled,
       g.read_throttled_rows, g.age_rows
  FROM expected e JOIN got g USING (shard_id) ORDER BY 1;
-- shard 1 counted one record (13 bytes) more: the rolled-back one went there
SELECT shard_id FROM stream.list_shards('mt')
 WHERE stream.hash_key('rolled back') BETWEEN starting_hash_key AND ending_hash_key;

-- throttled records and calls are counted, and the refused are not incoming
SET stream.enforce_shard_limits = on;
SET stream.throttle_test_clock = 0;
SELECT stream.create_stream('mt_hot', 1);
SELECT stream.enable_enhanced_monitoring('mt_hot', ARRAY['ALL']) ->> 'StreamName';
SELECT count(error_code) FROM stream.put_records('mt_hot', ARRAY(SELECT 'k' || i FROM generate_series(1, 500) i),
                                                 ARRAY(SELECT '\x01'::bytea FROM generate_series(1, 500)));
SELECT count(error_code) FROM stream.put_records('mt_hot', ARRAY(SELECT 'k' || i FROM generate_series(1, 500) i),
                                                 ARRAY(SELECT '\x0102'::bytea FROM generate_series(1, 500)));
SELECT count(error_code) FROM stream.put_records('mt_hot', ARRAY(SELECT 'k' || i FROM generate_series(1, 300) i),
                                                 ARRAY(SELECT '\x01'::bytea FROM generate_series(1, 300)));
SELECT stream.get_shard_iterator('mt_hot', 'shardId-000000000000', 'TRIM_HORIZON') AS it \gset
SELECT cardinality(records) FROM stream.get_records(:'it', 10000);
SELECT cardinality(records) FROM stream.get_records(:'it', 1);
SELECT cardinality(records) FROM stream.get_records(:'it', 1);
SELECT cardinality(records) FROM stream.get_records(:'it', 1);
SELECT cardinality(records) FROM stream.get_records(:'it', 1);
SELECT pg_temp.try(format('SELECT stream.get_records(%L)', :'it'));
SELECT pg_temp.try(format('SELECT stream.get_records(%L)', :'it'));
RESET stream.enforce_shard_limits;
RESET stream.throttle_test_clock;
SELECT stream.flush_metrics();
SELECT sum(incoming_records), sum(incoming_bytes), sum(outgoing_records), sum(outgoing_bytes),
       sum(write_provisioned_throughput_exceeded), sum(read_provisioned_throughput_exceeded)
  FROM stream.stream_metrics WHERE stream_name = 'mt_hot';
SELECT sum(incoming_records), sum(incoming_bytes), sum(outgoing_records), sum(outgoing_bytes),
       sum(write_provisioned_throughput_exceeded), sum(read_provisioned_throughput_exceeded)
  FROM stream.shard_metrics WHERE stream_name = 'mt_hot';

-- Who sees what.  A role that may not read a stream sees none of its
-- metrics, in the views or through the functions behind them, and the
-- tables are closed; a reader sees the stream's.
SELECT stream.grant_stream_access('mt', 'mt_reader', 'read');
CREATE FUNCTION pg_temp.leak(t text) RETURNS bool LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN
  RAISE WARNING 'leaked %', t;
  RETURN true;
END $$;
GRANT EXECUTE ON FUNCTION pg_temp.leak(text) TO PUBLIC;
SET ROLE mt_stranger;
SELECT count(*) FROM stream.stream_metrics WHERE stream_name LIKE 'mt%';
SELECT count(*) FROM stream.shard_metrics WHERE stream_name LIKE 'mt%';
SELECT count(*) FROM stream.stream_metrics WHERE pg_temp.leak(stream_name) AND stream_name LIKE 'mt%';
SELECT count(*) FROM stream.shard_metrics WHERE pg_temp.leak(shard_id) AND stream_name LIKE 'mt%';
SELECT pg_temp.try('SELECT * FROM stream.stream_metric_data');
SELECT pg_temp.try('SELECT * FROM stream.shard_metric_data');
SELECT pg_temp.try('DELETE FROM stream.stream_metric_data');
SELECT pg_temp.try('LOCK TABLE stream.shard_metric_data');
SELECT pg_temp.try($$SELECT * FROM stream_internal._live_metrics(1, now())$$);
SELECT pg_temp.try($$SELECT stream_internal._metrics_write('{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}')$$);
SELECT pg_temp.try($$SELECT stream_internal._metrics_trim('0')$$);
SELECT records_behind IS NULL AS hidden
  FROM stream.streams s, LATERAL stream_internal._shard_lag(s.stream_id, 0, 0) WHERE s.stream_name = 'mt';
SET ROLE mt_reader;
SELECT DISTINCT stream_name FROM stream.stream_metrics WHERE stream_name LIKE 'mt%';
SELECT count(DISTINCT shard_id) FROM stream.shard_metrics WHERE stream_name LIKE 'mt%';
SELECT records_behind IS NOT NULL AS shown
  FROM stream.streams s, LATERAL stream_internal._shard_lag(s.stream_id, 0, 0) WHERE s.stream_name = 'mt';
RESET ROLE;

-- a deleted stream's metrics disappear with it
SELECT stream.delete_stream('mt_hot');
SELECT count(*) FROM stream.stream_metrics WHERE stream_name = 'mt_hot';
SELECT count(*) FROM stream.shard_metrics WHERE stream_name = 'mt_hot';

SELECT stream.revoke_stream_access('mt', 'mt_reader');
SELECT stream.delete_stream('mt');
DROP ROLE mt_reader;
DROP ROLE mt_stranger;
