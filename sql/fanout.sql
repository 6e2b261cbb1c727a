--
-- fanout: enhanced fan-out consumers (register, list, describe, deregister)
-- and subscribe_to_shard's positions and refusals; the stream's
-- notification channel.  Nothing here waits: every subscription either
-- returns records at once or has wait_timeout 0.  (Latency and wake-ups:
-- test/scripts/71_fanout.py.)
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS stream;
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/fixtures/err_streams.psql

--
-- 1. register, list, describe, deregister
--
SELECT stream.register_stream_consumer('err_s', 'fan_one') ->> 'ConsumerName' AS registered;
SELECT stream.register_stream_consumer('err_s', 'fan_two') ->> 'ConsumerStatus' AS status;
SELECT consumer_name, consumer_arn ~ ('^arn:aws:kinesis:[a-z0-9-]+:[0-9]{12}:stream/err_s/consumer/' || consumer_name || ':[0-9]+$') AS arn_ok,
       consumer_status
FROM stream.list_stream_consumers('err_s');
SELECT (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(stream.describe_stream_consumer('err_s', 'fan_one')) k) AS keys;
SELECT stream.describe_stream_summary('err_s') -> 'ConsumerCount' AS consumer_count;
-- a stream with consumers is in use
SELECT stream.delete_stream('err_s');

--
-- 2. refused registrations and lookups
--
SELECT stream.register_stream_consumer('err_s', 'fan_one');
SELECT stream.register_stream_consumer('err_s', '');
SELECT stream.register_stream_consumer('err_s', 'has space');
SELECT stream.register_stream_consumer('err_s', repeat('c', 129));
SELECT stream.register_stream_consumer('err_nope', 'fan_one');
SELECT stream.describe_stream_consumer('err_s', 'fan_nope');
SELECT stream.describe_stream_consumer('err_other', 'fan_one');
SELECT stream.deregister_stream_consumer('err_s', 'fan_nope');
SELECT * FROM stream.list_stream_consumers('err_nope');

--
-- 3. subscribe_to_shard: positions, continuation, refusals
--
SELECT cardinality(records) AS records, continuation_sequence_number = (SELECT max(sequence_number) FROM stream.read_shard('err_s', 'shardId-000000000000')) AS continues_after_last,
       millis_behind_latest
FROM stream.subscribe_to_shard('err_s', 'fan_one', 'shardId-000000000000', 'TRIM_HORIZON');
-- (one subscription per consumer and shard, and a call within 5 s of the
-- last that does not continue it is refused: each position with a
-- consumer, or a shard, of its own; sql/subscriptions.sql has the rule)
SELECT cardinality(records) AS records
FROM stream.subscribe_to_shard('err_s', 'fan_two', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', :'seq_s0');
SELECT stream.register_stream_consumer('err_s', 'fan_three') ->> 'ConsumerName' AS registered;
SELECT cardinality(records) AS records
FROM stream.subscribe_to_shard('err_s', 'fan_three', 'shardId-000000000000', 'AFTER_SEQUENCE_NUMBER', :'seq_s0');
SELECT cardinality(records) AS records, records IS NOT NULL AS records_not_null
FROM stream.subscribe_to_shard('err_s', 'fan_one', 'shardId-000000000001', 'LATEST', NULL, '0');
SELECT * FROM stream.subscribe_to_shard('err_s', 'fan_nope', 'shardId-000000000000', 'TRIM_HORIZON');
SELECT * FROM stream.subscribe_to_shard('err_s', 'fan_one', 'shardId-000000000009', 'TRIM_HORIZON');
SELECT * FROM stream.subscribe_to_shard('err_s', 'fan_one', 'shardId-000000000000', 'BOGUS');
SELECT * FROM stream.subscribe_to_shard('err_s', 'fan_one', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER');
SELECT * FROM stream.subscribe_to_shard('err_s', 'fan_one', 'shardId-000000000000', NULL);
SELECT * FROM stream.subscribe_to_shard('err_s', 'fan_one', 'shardId-000000000000', 'LATEST', NULL, '-1 second');

--
-- 4. notifications: a channel per stream, off until enabled
--
SELECT stream.notification_channel('err_s') = 'stream_' || (SELECT stream_id FROM stream.streams WHERE stream_name = 'err_s') AS channel_ok;
SELECT stream.enable_stream_notifications('err_s') = stream.notification_channel('err_s') AS enabled_returns_channel;
SELECT stream.enable_stream_notifications('err_s', false) IS NOT NULL AS disabled;
SELECT stream.notification_channel('err_nope');

SELECT stream.deregister_stream_consumer('err_s', 'fan_one');
SELECT stream.deregister_stream_consumer('err_s', 'fan_two');
SELECT stream.deregister_stream_consumer('err_s', 'fan_three');
SELECT count(*) AS consumers_left FROM stream.list_stream_consumers('err_s');

\i :abs_srcdir/sql/fixtures/err_streams_end.psql
