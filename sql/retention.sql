--
-- retention: Increase/DecreaseStreamRetentionPeriod, and the 24..8760 hour
-- bounds at creation and on change.  (What expires: test/pgtap/retention_chunks.sql.)
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS stream;
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/fixtures/api_streams.psql

--
-- 1. changing the retention period
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

SELECT stream.delete_stream('api_one');
SELECT stream.delete_stream('api_two');
SELECT stream.delete_stream('api.three-3_x');

\i :abs_srcdir/sql/fixtures/err_streams.psql

--
-- 2. out of bounds
--
SELECT stream.create_stream('err_new', 1, 23);
SELECT stream.create_stream('err_new', 1, 0);
SELECT stream.create_stream('err_new', 1, 8761);
SELECT stream.increase_stream_retention_period('err_s', 8761);
SELECT stream.increase_stream_retention_period('err_s', 30);
SELECT stream.increase_stream_retention_period('err_s', 23);
SELECT stream.decrease_stream_retention_period('err_s', 100);
SELECT stream.decrease_stream_retention_period('err_s', 23);
SELECT stream.decrease_stream_retention_period('err_s', 0);
SELECT stream.decrease_stream_retention_period('err_s', 8761);

\i :abs_srcdir/sql/fixtures/err_streams_end.psql
