-- Shard iterator security: tampered, re-encoded, truncated and expired
-- iterators are rejected and never read another stream or shard.
--
-- No outer BEGIN/ROLLBACK: reads must see committed records (get_records
-- never returns the reading transaction's own puts), so the streams are
-- created and committed here and deleted at the end.
\set ON_ERROR_STOP 1
\set QUIET 1
SET client_min_messages = warning;

\o /dev/null
DO $$ BEGIN
    PERFORM stream.delete_stream(stream_name) FROM stream.list_streams() WHERE stream_name LIKE 'tap_sec_%';
END $$;

SELECT stream.create_stream('tap_sec_a', 2);
SELECT stream.create_stream('tap_sec_b', 2);
SELECT count(*) FROM stream.put_records('tap_sec_a', ARRAY['a1', 'a2', 'a3'], ARRAY['\xa1', '\xa2', '\xa3']::bytea[], ARRAY['0', '0', '0']);
SELECT count(*) FROM stream.put_records('tap_sec_a', ARRAY['a4'], ARRAY['\xa4']::bytea[], ARRAY['340282366920938463463374607431768211455']);
SELECT count(*) FROM stream.put_records('tap_sec_b', ARRAY['b1', 'b2'], ARRAY['\xb1', '\xb2']::bytea[], ARRAY['0', '0']);

SELECT stream_id AS id_a FROM stream.streams WHERE stream_name = 'tap_sec_a' \gset
SELECT stream_id AS id_b FROM stream.streams WHERE stream_name = 'tap_sec_b' \gset
SELECT stream.get_shard_iterator('tap_sec_a', 'shardId-000000000000', 'TRIM_HORIZON') AS it \gset
SELECT stream.get_shard_iterator('tap_sec_a', 'shardId-000000000000', 'LATEST') AS it_latest \gset

-- Re-encode the iterator's body (layout of src/streams/iterator.c: version 1 byte,
-- stream id 4, shard index 4, next sequence 8, created ms 8, then a
-- 16-byte HMAC tag) with one field changed and the old tag kept.
CREATE FUNCTION pg_temp.reencode(it text, byte_offset int, new_bytes bytea) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT encode(overlay(decode(it, 'base64') PLACING new_bytes FROM byte_offset + 1 FOR length(new_bytes)), 'base64')
$$;
-- Result of get_records on an iterator: 'ok:<n records>:<partition keys>' or the error.
CREATE FUNCTION pg_temp.read(it text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    SELECT * INTO r FROM stream.get_records(it);
    RETURN 'ok:' || cardinality(r.records) || ':' ||
           coalesce((SELECT string_agg(x.partition_key, ',') FROM unnest(r.records) x), '');
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || SQLERRM;
END $$;

\o
SELECT plan(28);

-- the genuine iterator works
SELECT is(pg_temp.read(:'it'), 'ok:3:a1,a2,a3', 'the genuine iterator reads shard 0 of stream A');
SELECT cmp_ok(length(:'it'), '<=', 512, 'iterator is at most 512 characters');
SELECT is(length(decode(:'it', 'base64')), 41, 'iterator decodes to 41 bytes (25-byte body + 16-byte tag)');
SELECT is(get_byte(decode(:'it', 'base64'), 0), 1, 'iterator version byte is 1');
SELECT is(substring(decode(:'it', 'base64') FROM 2 FOR 4), int4send(:id_a), 'iterator body carries stream A''s id');

-- re-encoded with another stream / shard / position / time: rejected
SELECT is(pg_temp.read(pg_temp.reencode(:'it', 1, int4send(:id_b))),
          '22023 InvalidArgumentException: Invalid ShardIterator.',
          'stream id switched to stream B, old tag: rejected');
SELECT is(pg_temp.read(pg_temp.reencode(:'it', 5, int4send(1))),
          '22023 InvalidArgumentException: Invalid ShardIterator.',
          'shard index switched to shard 1, old tag: rejected');
SELECT is(pg_temp.read(pg_temp.reencode(pg_temp.reencode(:'it', 1, int4send(:id_b)), 5, int4send(1))),
          '22023 InvalidArgumentException: Invalid ShardIterator.',
          'stream and shard switched, old tag: rejected');
SELECT is(pg_temp.read(pg_temp.reencode(:'it', 9, int8send(0))),
          '22023 InvalidArgumentException: Invalid ShardIterator.',
          'next sequence number rewound to 0, old tag: rejected');
SELECT is(pg_temp.read(pg_temp.reencode(:'it_latest', 9, substring(decode(:'it', 'base64') FROM 10 FOR 8))),
          '22023 InvalidArgumentException: Invalid ShardIterator.',
          'LATEST iterator moved back to TRIM_HORIZON position, old tag: rejected');
SELECT is(pg_temp.read(pg_temp.reencode(:'it', 17, int8send((extract(epoch FROM now() + interval '1 day') * 1000)::bigint))),
          '22023 InvalidArgumentException: Invalid ShardIterator.',
          'creation time moved forward (to dodge expiry), old tag: rejected');
SELECT is(pg_temp.read(pg_temp.reencode(:'it', 0, '\x02'::bytea)),
          '22023 InvalidArgumentException: Invalid ShardIterator.',
          'version byte changed: rejected');
SELECT is(pg_temp.read(pg_temp.reencode(:'it', 25, '\x00000000000000000000000000000000'::bytea)),
          '22023 InvalidArgumentException: Invalid ShardIterator.',
          'tag zeroed: rejected');
-- the tag of stream A's iterator does not verify a body naming stream B, and vice versa
SELECT is(pg_temp.read(encode(substring(decode(stream.get_shard_iterator('tap_sec_b', 'shardId-000000000000', 'TRIM_HORIZON'), 'base64') FROM 1 FOR 25)
                              || substring(decode(:'it', 'base64') FROM 26 FOR 16), 'base64')),
          '22023 InvalidArgumentException: Invalid ShardIterator.',
          'body of a stream B iterator with the tag of a stream A iterator: rejected');

-- every single-bit flip of the 41 bytes is rejected
SELECT is((SELECT count(*) FROM generate_series(0, 41 * 8 - 1) b
            WHERE pg_temp.read(encode(set_bit(decode(:'it', 'base64'), b, 1 - get_bit(decode(:'it', 'base64'), b)), 'base64'))
                  <> '22023 InvalidArgumentException: Invalid ShardIterator.'),
          0::bigint, 'all 328 single-bit flips are rejected with InvalidArgumentException');
-- truncated / extended / garbage
SELECT is(pg_temp.read(left(:'it', 40)), '22023 InvalidArgumentException: Invalid ShardIterator.', 'truncated iterator: rejected');
SELECT is(pg_temp.read(encode(substring(decode(:'it', 'base64') FROM 1 FOR 40), 'base64')),
          '22023 InvalidArgumentException: Invalid ShardIterator.', 'iterator missing its last byte: rejected');
SELECT is(pg_temp.read(encode(decode(:'it', 'base64') || '\x00'::bytea, 'base64')),
          '22023 InvalidArgumentException: Invalid ShardIterator.', 'iterator with a byte appended: rejected');
SELECT is(pg_temp.read('not an iterator at all'), '22023 InvalidArgumentException: Invalid ShardIterator.', 'garbage: rejected');

-- after all that, the genuine iterators still read only their own shard
SELECT is(pg_temp.read(:'it'), 'ok:3:a1,a2,a3', 'the genuine iterator still works');
SELECT is(pg_temp.read(stream.get_shard_iterator('tap_sec_b', 'shardId-000000000000', 'TRIM_HORIZON')), 'ok:2:b1,b2',
          'stream B shard 0 reads only its own records');
SELECT is(pg_temp.read(stream.get_shard_iterator('tap_sec_a', 'shardId-000000000001', 'TRIM_HORIZON')), 'ok:1:a4',
          'stream A shard 1 reads only its own records');

-- expiry: the lifetime is stream.iterator_lifetime (default 300 s, superuser only)
SELECT is((SELECT setting || ' ' || unit || ' ' || context FROM pg_settings WHERE name = 'stream.iterator_lifetime'),
          '300000 ms superuser', 'stream.iterator_lifetime defaults to 300000 ms and is superuser-only');
SET stream.iterator_lifetime = '200ms';
SELECT stream.get_shard_iterator('tap_sec_a', 'shardId-000000000000', 'TRIM_HORIZON') AS short_it \gset
SELECT next_shard_iterator AS short_next FROM stream.get_records(:'short_it') \gset
SELECT is(pg_temp.read(:'short_it'), 'ok:3:a1,a2,a3', 'a fresh iterator works');
\o /dev/null
SELECT pg_sleep(0.5);
\o
SELECT matches(pg_temp.read(:'short_it'),
               '^22023 ExpiredIteratorException: Iterator expired\. The iterator was created at time .* while right now it is .* which is further in the future than the tolerated delay of 200 milliseconds\.$',
               'an iterator older than the lifetime is rejected with ExpiredIteratorException');
-- two different times (the message once printed one buffer twice)
SELECT ok((SELECT m[2]::timestamptz - m[1]::timestamptz >= interval '0.4 s'
             FROM regexp_match(pg_temp.read(:'short_it'), 'created at time (.*) while right now it is (.*) which is') m),
          'ExpiredIteratorException gives the creation time and the present time, 0.5 s apart');
SELECT matches(pg_temp.read(:'short_next'), '^22023 ExpiredIteratorException: ',
               'a next_shard_iterator older than the lifetime is rejected too');
RESET stream.iterator_lifetime;
SELECT is(pg_temp.read(:'short_it'), 'ok:3:a1,a2,a3',
          'with the default 300 s lifetime the same (0.5 s old) iterator is valid again');

SELECT * FROM finish();

\o /dev/null
SELECT stream.delete_stream('tap_sec_a');
SELECT stream.delete_stream('tap_sec_b');
