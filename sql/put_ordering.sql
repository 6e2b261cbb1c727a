--
-- put_ordering: put_record(..., sequence_number_for_ordering) as Kinesis
-- defines SequenceNumberForOrdering: the new record's sequence number is
-- greater than the given one, also when that one is of another shard; the
-- member's pattern, then whether it is a number this database handed out.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS stream;
\set VERBOSITY terse

SELECT stream.create_stream('ord_s', 4);
SELECT stream.create_stream('ord_other', 1);
-- shard 0 and shard 3 by explicit hash key
SELECT '0' AS ehk_a, '340282366920938463463374607431768211455' AS ehk_b \gset

-- shard 3 puts once; then shard 0 takes 1000 numbers, so shard 3's own next number is lower
SELECT shard_id FROM stream.put_record('ord_s', 'k', '\x01', :'ehk_b');
SELECT count(*) AS put
  FROM generate_series(1, 2) b, LATERAL stream.put_records('ord_s', array_fill('k'::text, ARRAY[500]),
                                                            array_fill('\x02'::bytea, ARRAY[500]),
                                                            array_fill(:'ehk_a'::text, ARRAY[500])) p;
SELECT max(sequence_number) AS last_a FROM stream.read_shard('ord_s', 'shardId-000000000000') \gset
SELECT sequence_number AS unordered_b FROM stream.put_record('ord_s', 'k', '\x03', :'ehk_b') \gset
-- (unless an hour boundary passed meanwhile: the hour leads a sequence number)
SELECT :'unordered_b'::numeric < :'last_a'::numeric
       OR substr(:'unordered_b', 2, 19)::bigint >> 32 > substr(:'last_a', 2, 19)::bigint >> 32 AS unordered_is_lower;

-- with the previous record's number it is greater, on another shard too
SELECT shard_id, sequence_number::numeric > :'last_a'::numeric AS greater
  FROM stream.put_record('ord_s', 'k', '\x04', :'ehk_b', :'last_a');
SELECT sequence_number AS ordered_b FROM stream.put_record('ord_s', 'k', '\x05', :'ehk_b', :'last_a') \gset
-- chained: each greater than the one before, and the shard's later puts stay above
SELECT p.sequence_number::numeric > :'ordered_b'::numeric AS chained
  FROM stream.put_record('ord_s', 'k', '\x06', :'ehk_b', :'ordered_b') p;
SELECT p.sequence_number::numeric > :'ordered_b'::numeric AS later_put_above
  FROM stream.put_record('ord_s', 'k', '\x07', :'ehk_b') p;
-- a number of the same shard, and one of another stream, are taken too
SELECT p.sequence_number::numeric > :'last_a'::numeric AS same_shard
  FROM stream.put_record('ord_s', 'k', '\x08', :'ehk_a', :'last_a') p;
SELECT sequence_number AS other_seq FROM stream.put_record('ord_other', 'k', '\x09') \gset
SELECT p.sequence_number::numeric > :'other_seq'::numeric AS other_stream
  FROM stream.put_record('ord_s', 'k', '\x0a', :'ehk_b', :'other_seq') p;
-- the records are there, in order within the shard
SELECT array_agg(encode(data, 'hex') ORDER BY sequence_number) AS shard_3
  FROM stream.read_shard('ord_s', 'shardId-000000000003');
-- NULL: no ordering
SELECT shard_id FROM stream.put_record('ord_s', 'k', '\x0b', :'ehk_b', NULL);

-- the member's pattern 0|([1-9]\d{0,128}) (ValidationException), before the stream is looked up
SELECT * FROM stream.put_record('ord_s', 'k', '\x01', NULL, '');
SELECT * FROM stream.put_record('ord_s', 'k', '\x01', NULL, '01');
SELECT * FROM stream.put_record('ord_s', 'k', '\x01', NULL, '-1');
SELECT * FROM stream.put_record('ord_s', 'k', '\x01', NULL, '12a');
SELECT * FROM stream.put_record('ord_s', 'k', '\x01', NULL, '1' || repeat('0', 129));
SELECT * FROM stream.put_record('ord_missing', 'k', '\x01', NULL, '01');
-- then InvalidArgumentException: not a number of ours, or one never handed out
SELECT * FROM stream.put_record('ord_missing', 'k', '\x01', NULL, '1');
SELECT * FROM stream.put_record('ord_s', 'k', '\x01', NULL, '0');
SELECT * FROM stream.put_record('ord_s', 'k', '\x01', NULL, '1' || repeat('0', 128));
SELECT * FROM stream.put_record('ord_s', 'k', '\x01', NULL, '49590338271490256608559692538361571095921575989136588898');
SELECT * FROM stream.put_record('ord_s', 'k', '\x01', NULL, '4999999999999999999900000000010000000000');
SELECT * FROM stream.put_record('ord_s', 'k', '\x01', NULL, '5000000000000000000000000000010000000000');
-- a refused put puts nothing
SELECT count(*) AS shard_0 FROM stream.read_shard('ord_s', 'shardId-000000000000');

SELECT stream.delete_stream(s) FROM unnest(ARRAY['ord_s', 'ord_other']) s;
