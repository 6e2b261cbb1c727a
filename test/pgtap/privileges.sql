-- Per-stream privileges: no grant -> no put, no read; 'read' reads but does
-- not put; 'write' puts but does not read; an iterator never carries access
-- to a stream the role cannot read.
--
-- No outer BEGIN/ROLLBACK so that reads see committed records; roles and
-- streams are cleaned up at the start (leftovers of an aborted run) and end.
\set ON_ERROR_STOP 1
\set QUIET 1
SET client_min_messages = warning;
\o /dev/null
DO $$ BEGIN
    PERFORM stream.delete_stream(stream_name) FROM stream.list_streams() WHERE stream_name LIKE 'tap_priv_%';
END $$;
DROP ROLE IF EXISTS tap_priv_none;
DROP ROLE IF EXISTS tap_priv_reader;
DROP ROLE IF EXISTS tap_priv_writer;
DROP ROLE IF EXISTS tap_priv_rw;
CREATE ROLE tap_priv_none NOLOGIN;
CREATE ROLE tap_priv_reader NOLOGIN;
CREATE ROLE tap_priv_writer NOLOGIN;
CREATE ROLE tap_priv_rw NOLOGIN;

SELECT stream.create_stream('tap_priv_a', 1);
SELECT stream.create_stream('tap_priv_b', 1);
SELECT count(*) FROM stream.put_record('tap_priv_a', 'a1', '\xa1');
SELECT count(*) FROM stream.put_record('tap_priv_b', 'b1', '\xb1');
SELECT stream_id AS id_a FROM stream.streams WHERE stream_name = 'tap_priv_a' \gset
SELECT stream_id AS id_b FROM stream.streams WHERE stream_name = 'tap_priv_b' \gset
-- iterators handed out to a superuser
SELECT stream.get_shard_iterator('tap_priv_a', 'shardId-000000000000', 'TRIM_HORIZON') AS it_a \gset
SELECT stream.get_shard_iterator('tap_priv_b', 'shardId-000000000000', 'TRIM_HORIZON') AS it_b \gset

-- 'ok:<n>' or SQLSTATE + message
CREATE FUNCTION pg_temp.read(it text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    SELECT * INTO r FROM stream.get_records(it);
    RETURN 'ok:' || cardinality(r.records);
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || SQLERRM;
END $$;
GRANT EXECUTE ON FUNCTION pg_temp.read(text) TO PUBLIC;
\o

SELECT plan(41);

-------------------------------------------------------------------------
-- a role without any grant
-------------------------------------------------------------------------
SET ROLE tap_priv_none;
SELECT throws_ok($$SELECT * FROM stream.put_record('tap_priv_a', 'k', '\x00')$$, '42501',
                 'AccessDeniedException: User tap_priv_none is not authorized to put records to stream tap_priv_a',
                 'no grant: put_record is refused');
SELECT throws_ok($$SELECT * FROM stream.put_records('tap_priv_a', ARRAY['k'], ARRAY['\x00']::bytea[])$$, '42501',
                 'AccessDeniedException: User tap_priv_none is not authorized to put records to stream tap_priv_a',
                 'no grant: put_records is refused');
SELECT throws_ok($$SELECT stream.get_shard_iterator('tap_priv_a', 'shardId-000000000000', 'TRIM_HORIZON')$$, '42501',
                 'AccessDeniedException: User tap_priv_none is not authorized to read records from stream tap_priv_a',
                 'no grant: get_shard_iterator is refused');
SELECT throws_ok($$SELECT * FROM stream.read_shard('tap_priv_a', 'shardId-000000000000')$$, '42501',
                 'AccessDeniedException: User tap_priv_none is not authorized to read records from stream tap_priv_a',
                 'no grant: read_shard is refused');
SELECT is(pg_temp.read(:'it_a'),
          '42501 AccessDeniedException: User tap_priv_none is not authorized to read records from stream tap_priv_a',
          'no grant: get_records with an iterator obtained by someone else is refused');
SELECT throws_ok(format('SELECT count(*) FROM stream_data.%I', 's' || :id_a), '42501', NULL,
                 'no grant: the stream''s table cannot be read directly');
SELECT throws_ok(format('INSERT INTO stream_data.%I VALUES (0, 1, now(), %L, %L)', 's' || :id_a, 'k', '\x00'), '42501', NULL,
                 'no grant: the stream''s table cannot be written directly');
SELECT throws_ok($$SELECT * FROM stream.secret$$, '42501', NULL, 'the iterator key stream.secret is not readable');
SELECT throws_ok($$SET stream.iterator_lifetime = '1h'$$, '42501', NULL,
                 'an ordinary role cannot lengthen the iterator lifetime');
SELECT throws_ok($$SELECT stream.create_stream('tap_priv_c', 1)$$, '42501', NULL, 'create_stream is for administrators');
SELECT throws_ok($$SELECT stream.delete_stream('tap_priv_a')$$, '42501', NULL, 'delete_stream is for administrators');
SELECT throws_ok($$SELECT stream.grant_stream_access('tap_priv_a', 'tap_priv_none', 'read_write')$$, '42501', NULL,
                 'a role cannot grant itself access');
SELECT throws_ok($$SELECT stream.increase_stream_retention_period('tap_priv_a', 48)$$, '42501', NULL,
                 'retention changes are for administrators');
SELECT throws_ok($$SELECT * FROM stream.run_maintenance()$$, '42501', NULL, 'run_maintenance is for administrators');
RESET ROLE;

-------------------------------------------------------------------------
-- 'read'
-------------------------------------------------------------------------
SELECT lives_ok($$SELECT stream.grant_stream_access('tap_priv_a', 'tap_priv_reader', 'read')$$, 'grant read on A');
SET ROLE tap_priv_reader;
SELECT stream.get_shard_iterator('tap_priv_a', 'shardId-000000000000', 'TRIM_HORIZON') AS reader_it_a \gset
SELECT is(pg_temp.read(:'reader_it_a'), 'ok:1', 'read: get_records on A returns A''s record');
SELECT is((SELECT string_agg(partition_key, ',') FROM stream.read_shard('tap_priv_a', 'shardId-000000000000')), 'a1',
          'read: read_shard on A works');
SELECT is(pg_temp.read(:'it_a'), 'ok:1', 'read: an iterator of A obtained by someone else works too');
SELECT throws_ok($$SELECT * FROM stream.put_record('tap_priv_a', 'k', '\x00')$$, '42501',
                 'AccessDeniedException: User tap_priv_reader is not authorized to put records to stream tap_priv_a',
                 'read: put_record is refused');
SELECT throws_ok($$SELECT * FROM stream.put_records('tap_priv_a', ARRAY['k'], ARRAY['\x00']::bytea[])$$, '42501',
                 'AccessDeniedException: User tap_priv_reader is not authorized to put records to stream tap_priv_a',
                 'read: put_records is refused');
SELECT throws_ok($$SELECT stream.get_shard_iterator('tap_priv_b', 'shardId-000000000000', 'TRIM_HORIZON')$$, '42501',
                 'AccessDeniedException: User tap_priv_reader is not authorized to read records from stream tap_priv_b',
                 'read on A: get_shard_iterator on B is refused');
-- an iterator of B (obtained by a superuser) gives no access to B
SELECT is(pg_temp.read(:'it_b'),
          '42501 AccessDeniedException: User tap_priv_reader is not authorized to read records from stream tap_priv_b',
          'read on A: get_records with an iterator of B is refused');
-- an iterator of A re-encoded to name B is rejected before anything is read
SELECT is(pg_temp.read(encode(overlay(decode(:'reader_it_a', 'base64') PLACING int4send(:id_b) FROM 2 FOR 4), 'base64')),
          '22023 InvalidArgumentException: Invalid ShardIterator.',
          'read on A: an iterator of A re-encoded to name B is rejected');
-- the body of B's iterator with A's tag
SELECT is(pg_temp.read(encode(substring(decode(:'it_b', 'base64') FROM 1 FOR 25) || substring(decode(:'reader_it_a', 'base64') FROM 26), 'base64')),
          '22023 InvalidArgumentException: Invalid ShardIterator.',
          'read on A: B''s iterator body with A''s tag is rejected');
RESET ROLE;

-------------------------------------------------------------------------
-- 'write'
-------------------------------------------------------------------------
SELECT lives_ok($$SELECT stream.grant_stream_access('tap_priv_a', 'tap_priv_writer', 'write')$$, 'grant write on A');
SET ROLE tap_priv_writer;
SELECT lives_ok($$SELECT * FROM stream.put_record('tap_priv_a', 'w1', '\x01')$$, 'write: put_record works');
SELECT lives_ok($$SELECT * FROM stream.put_records('tap_priv_a', ARRAY['w2', 'w3'], ARRAY['\x02', '\x03']::bytea[])$$,
                'write: put_records works');
SELECT throws_ok($$SELECT stream.get_shard_iterator('tap_priv_a', 'shardId-000000000000', 'TRIM_HORIZON')$$, '42501',
                 'AccessDeniedException: User tap_priv_writer is not authorized to read records from stream tap_priv_a',
                 'write: get_shard_iterator is refused');
SELECT is(pg_temp.read(:'it_a'),
          '42501 AccessDeniedException: User tap_priv_writer is not authorized to read records from stream tap_priv_a',
          'write: get_records with someone else''s iterator is refused');
SELECT throws_ok($$SELECT * FROM stream.put_record('tap_priv_b', 'w', '\x00')$$, '42501',
                 'AccessDeniedException: User tap_priv_writer is not authorized to put records to stream tap_priv_b',
                 'write on A: put_record on B is refused');
RESET ROLE;
SELECT is((SELECT string_agg(partition_key, ',') FROM stream.read_shard('tap_priv_a', 'shardId-000000000000')), 'a1,w1,w2,w3',
          'the writer''s records are in A');
SELECT is((SELECT string_agg(partition_key, ',') FROM stream.read_shard('tap_priv_b', 'shardId-000000000000')), 'b1',
          'B is untouched');

-------------------------------------------------------------------------
-- 'read_write'
-------------------------------------------------------------------------
SELECT lives_ok($$SELECT stream.grant_stream_access('tap_priv_b', 'tap_priv_rw', 'read_write')$$, 'grant read_write on B');
SET ROLE tap_priv_rw;
SELECT lives_ok($$SELECT * FROM stream.put_record('tap_priv_b', 'rw1', '\x01')$$, 'read_write: put_record works');
SELECT is((SELECT string_agg(partition_key, ',') FROM stream.read_shard('tap_priv_b', 'shardId-000000000000')), 'b1,rw1',
          'read_write: read_shard works and sees the committed put');
SELECT throws_ok($$SELECT * FROM stream.read_shard('tap_priv_a', 'shardId-000000000000')$$, '42501', NULL,
                 'read_write on B: A is refused');
RESET ROLE;

-------------------------------------------------------------------------
-- revoke: held iterators stop working (privileges are checked on every read)
-------------------------------------------------------------------------
SELECT lives_ok($$SELECT stream.revoke_stream_access('tap_priv_a', 'tap_priv_reader', 'read')$$, 'revoke read on A');
SET ROLE tap_priv_reader;
SELECT is(pg_temp.read(:'reader_it_a'),
          '42501 AccessDeniedException: User tap_priv_reader is not authorized to read records from stream tap_priv_a',
          'after revoke: the reader''s own earlier iterator is refused');
SELECT throws_ok($$SELECT stream.get_shard_iterator('tap_priv_a', 'shardId-000000000000', 'TRIM_HORIZON')$$, '42501', NULL,
                 'after revoke: get_shard_iterator is refused');
RESET ROLE;
SELECT lives_ok($$SELECT stream.revoke_stream_access('tap_priv_a', 'tap_priv_writer', 'write')$$, 'revoke write on A');
SET ROLE tap_priv_writer;
SELECT throws_ok($$SELECT * FROM stream.put_record('tap_priv_a', 'k', '\x00')$$, '42501', NULL,
                 'after revoke: put_record is refused');
RESET ROLE;

SELECT * FROM finish();

\o /dev/null
SELECT stream.delete_stream('tap_priv_a');
SELECT stream.delete_stream('tap_priv_b');
DROP ROLE tap_priv_none;
DROP ROLE tap_priv_reader;
DROP ROLE tap_priv_writer;
DROP ROLE tap_priv_rw;
