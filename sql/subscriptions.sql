--
-- subscriptions: one subscription per consumer and shard (Kinesis,
-- kinesis-semantics.md 1.13).  A call within 5 s of the last successful one
-- gets ResourceInUseException unless it continues that one (or retries a
-- failed call from where it started); other consumers and shards are
-- independent.  Concurrent calls and the take-over after 5 s:
-- test/scripts/77_subscription_in_use.py.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS stream;
\set VERBOSITY terse

SELECT stream.create_stream('sub_s', 2);
SELECT stream.register_stream_consumer('sub_s', c) IS NOT NULL AS registered FROM unnest(ARRAY['c1', 'c2']) c;
SELECT shard_id FROM stream.put_record('sub_s', 'k', '\x01', '0');

SELECT cardinality(records) AS got, continuation_sequence_number AS cont
  FROM stream.subscribe_to_shard('sub_s', 'c1', 'shardId-000000000000', 'TRIM_HORIZON', wait_timeout => '0') \gset
SELECT :got AS got;
SELECT shard_id FROM stream.put_record('sub_s', 'k', '\x02', '0');
-- starting over, or anywhere but where the last call stopped, at once: refused
SELECT cardinality(records) FROM stream.subscribe_to_shard('sub_s', 'c1', 'shardId-000000000000', 'TRIM_HORIZON', wait_timeout => '0');
SELECT cardinality(records) FROM stream.subscribe_to_shard('sub_s', 'c1', 'shardId-000000000000', 'LATEST', wait_timeout => '0');
SELECT cardinality(records) FROM stream.subscribe_to_shard('sub_s', 'c1', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', :'cont', wait_timeout => '0');
-- continuing: admitted, again and again (a call with nothing to read moves the continuation on too)
SELECT cardinality(records) AS got, continuation_sequence_number AS cont
  FROM stream.subscribe_to_shard('sub_s', 'c1', 'shardId-000000000000', 'AFTER_SEQUENCE_NUMBER', :'cont', wait_timeout => '0') \gset
SELECT :got AS got_the_put;
SELECT cardinality(records) AS got, continuation_sequence_number AS cont
  FROM stream.subscribe_to_shard('sub_s', 'c1', 'shardId-000000000000', 'AFTER_SEQUENCE_NUMBER', :'cont', wait_timeout => '0') \gset
SELECT :got AS got_nothing;
-- LATEST is where the last call stopped when nothing came since: that continues it
SELECT cardinality(records) AS latest FROM stream.subscribe_to_shard('sub_s', 'c1', 'shardId-000000000000', 'LATEST', wait_timeout => '0');
-- another consumer, and another shard, are other subscriptions
SELECT cardinality(records) AS c2_got FROM stream.subscribe_to_shard('sub_s', 'c2', 'shardId-000000000000', 'TRIM_HORIZON', wait_timeout => '0');
SELECT cardinality(records) AS other_shard FROM stream.subscribe_to_shard('sub_s', 'c1', 'shardId-000000000001', 'TRIM_HORIZON', wait_timeout => '0');
-- a call that fails after it began (cancelled while it waits) may be retried from where it started
SET statement_timeout = '100ms';
SELECT cardinality(records) FROM stream.subscribe_to_shard('sub_s', 'c1', 'shardId-000000000000', 'AFTER_SEQUENCE_NUMBER', :'cont', wait_timeout => '2 s');
RESET statement_timeout;
SELECT cardinality(records) AS retried FROM stream.subscribe_to_shard('sub_s', 'c1', 'shardId-000000000000', 'AFTER_SEQUENCE_NUMBER', :'cont', wait_timeout => '0');
-- errors before a call begins (no such consumer, bad arguments) leave the subscription as it was
SELECT cardinality(records) FROM stream.subscribe_to_shard('sub_s', 'nobody', 'shardId-000000000000', 'TRIM_HORIZON', wait_timeout => '0');
SELECT cardinality(records) FROM stream.subscribe_to_shard('sub_s', 'c1', 'shardId-000000000000', 'AFTER_SEQUENCE_NUMBER', '01', wait_timeout => '0');
SELECT cardinality(records) AS still_continues FROM stream.subscribe_to_shard('sub_s', 'c1', 'shardId-000000000000', 'AFTER_SEQUENCE_NUMBER', :'cont', wait_timeout => '0');
-- a consumer of a new stream of the same name starts afresh
SELECT stream.delete_stream('sub_s', enforce_consumer_deletion => true);
SELECT stream.create_stream('sub_s', 2);
SELECT stream.register_stream_consumer('sub_s', 'c1') IS NOT NULL AS registered;
SELECT cardinality(records) AS new_stream FROM stream.subscribe_to_shard('sub_s', 'c1', 'shardId-000000000000', 'TRIM_HORIZON', wait_timeout => '0');

SELECT stream.delete_stream('sub_s', enforce_consumer_deletion => true);
