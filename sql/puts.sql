--
-- puts: PutRecord and PutRecords (the fixture api_streams.psql makes the
-- puts and shows what each returned); sequence numbers; transactions;
-- partition keys, record and request sizes, explicit hash key syntax.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS stream;
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/fixtures/api_streams.psql

--
-- 1. sequence numbers of the fixture's puts
--
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
-- 2. transactions: rolled back puts never appear, own uncommitted puts are not read
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

SELECT stream.delete_stream('api_one');
SELECT stream.delete_stream('api_two');
SELECT stream.delete_stream('api.three-3_x');

\i :abs_srcdir/sql/fixtures/err_streams.psql

--
-- 3. partition keys and record sizes
--
SELECT * FROM stream.put_record('err_s', '', '\x00');
SELECT * FROM stream.put_record('err_s', repeat('k', 257), '\x00');
SELECT * FROM stream.put_record('err_s', repeat('ü', 257), '\x00');
-- 256 characters are fine even when they are 512 bytes
SELECT shard_id IS NOT NULL AS ok FROM stream.put_record('err_ok', repeat('ü', 256), '\x00');
SELECT shard_id IS NOT NULL AS ok FROM stream.put_record('err_ok', repeat('k', 256), '\x00');
-- key + data: exactly 1 MiB is fine, one byte more is not
SELECT shard_id IS NOT NULL AS ok FROM stream.put_record('err_ok', 'k', convert_to(repeat('x', 1048575), 'UTF8'));
SELECT shard_id IS NOT NULL AS ok FROM stream.put_record('err_ok', 'ü', convert_to(repeat('x', 1048574), 'UTF8'));
SELECT * FROM stream.put_record('err_s', 'k', convert_to(repeat('x', 1048576), 'UTF8'));
SELECT * FROM stream.put_record('err_s', 'kk', convert_to(repeat('x', 1048575), 'UTF8'));
SELECT * FROM stream.put_record('err_s', 'ü', convert_to(repeat('x', 1048575), 'UTF8'));
SELECT * FROM stream.put_record('err_s', 'k', convert_to(repeat('x', 2097152), 'UTF8'));

--
-- 4. put_records limits: 1..500 records, 5 MiB per request, same array lengths
--
SELECT count(*) FROM stream.put_records('err_s', array_fill('k'::text, ARRAY[501]), array_fill('\x00'::bytea, ARRAY[501]));
SELECT count(*) FROM stream.put_records('err_s', '{}'::text[], '{}'::bytea[]);
SELECT count(*) FROM stream.put_records('err_s', ARRAY['a', 'b'], ARRAY['\x01', '\x02', '\x03']::bytea[]);
SELECT count(*) FROM stream.put_records('err_s', ARRAY['a', 'b', 'c'], ARRAY['\x01', '\x02']::bytea[]);
SELECT count(*) FROM stream.put_records('err_s', ARRAY['a', 'b'], ARRAY['\x01', '\x02']::bytea[], ARRAY['0']);
SELECT count(*) FROM stream.put_records('err_s', ARRAY['a', 'b'], ARRAY['\x01', '\x02']::bytea[], ARRAY['0', '1', '2']);
-- five records of exactly 1 MiB each (5 MiB) are fine; one more byte is not
SELECT count(*) AS ok FROM stream.put_records('err_ok', array_fill('k'::text, ARRAY[5]),
                                              array_fill(convert_to(repeat('x', 1048575), 'UTF8'), ARRAY[5]))
WHERE error_code IS NULL;
SELECT count(*) FROM stream.put_records('err_s', array_fill('k'::text, ARRAY[6]),
                                        array_fill(convert_to(repeat('x', 1048575), 'UTF8'), ARRAY[5]) || '\x'::bytea);
SELECT count(*) FROM stream.put_records('err_s', array_fill('k'::text, ARRAY[5]),
                                        array_fill(convert_to(repeat('x', 1048575), 'UTF8'), ARRAY[4]) || convert_to(repeat('x', 1048576), 'UTF8'));
-- any bad record fails the whole request
SELECT count(*) FROM stream.put_records('err_s', ARRAY['a', ''], ARRAY['\x01', '\x02']::bytea[]);
SELECT count(*) FROM stream.put_records('err_s', ARRAY['a', repeat('k', 257)], ARRAY['\x01', '\x02']::bytea[]);
SELECT count(*) FROM stream.put_records('err_s', ARRAY['a', 'b'], ARRAY['\x01'::bytea, convert_to(repeat('x', 1048576), 'UTF8')]);
SELECT count(*) FROM stream.put_records('err_s', ARRAY['a', NULL], ARRAY['\x01', '\x02']::bytea[]);
SELECT count(*) FROM stream.put_records('err_s', ARRAY['a', 'b'], ARRAY['\x01', NULL]::bytea[]);
SELECT count(*) FROM stream.put_records('err_s', ARRAY[['a', 'b'], ['c', 'd']], ARRAY[['\x01', '\x02'], ['\x03', '\x04']]::bytea[]);

--
-- 5. explicit hash keys: pattern (ValidationException) before range
--    (InvalidArgumentException; the ranges are in routing.sql)
--
SELECT * FROM stream.put_record('err_s', 'a', '\x00', '00');
SELECT * FROM stream.put_record('err_s', 'a', '\x00', repeat('9', 39));
SELECT * FROM stream.put_records('err_s', ARRAY['a'], ARRAY['\x00']::bytea[], ARRAY['x']);

\i :abs_srcdir/sql/fixtures/err_streams_end.psql
