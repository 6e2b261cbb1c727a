--
-- leases: consumer applications (register, acquire_leases, checkpoint,
-- get_lease_iterator, release_leases) with bad arguments, checkpoints that
-- must not move, and shard ids read as get_shard_iterator reads them.
-- (Balancing, fencing and failover: specs/lease_fencing.spec,
-- test/scripts/70_leases.py.)
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS stream;
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/fixtures/err_streams.psql

--
-- 1. lease shard ids are read as get_shard_iterator reads them
--
SELECT stream.register_application('err_app', 'err_s');
SELECT count(*) FROM stream.acquire_leases('err_app', 'w', '1 minute');
SELECT stream.get_lease_iterator('err_app', 'w', 'shardId-0000000000001') IS NOT NULL AS lease_of_shard_1;
SELECT stream.checkpoint('err_app', 'w', 'shardId-000000000000', :'seq_s0');
SELECT stream.checkpoint('err_app', 'w', '0', :'seq_s0');
SELECT stream.checkpoint('err_app', 'w', 'shardId-99999999999', :'seq_s0');
SELECT stream.checkpoint('err_app', 'w', 'shardId-2147483648', :'seq_s0');
SELECT stream.checkpoint('err_app', 'w', '', :'seq_s0');
SELECT stream.checkpoint('err_app', 'w', NULL, :'seq_s0');

--
-- 2. applications: names, duplicates, positions
--
SELECT stream.register_application('err_app', 'err_s');
SELECT stream.register_application('err_app2', 'err_nope');
SELECT stream.register_application('', 'err_s');
SELECT stream.register_application('has space', 'err_s');
SELECT stream.register_application(NULL, 'err_s');
SELECT stream.register_application('err_app2', 'err_s', 'AT_SEQUENCE_NUMBER');
SELECT stream.register_application('err_app2', 'err_s', 'AT_TIMESTAMP');
SELECT stream.register_application('err_app2', 'err_s', 'LATEST', now());
SELECT count(*) AS err_app2 FROM stream.list_applications() WHERE application_name = 'err_app2';
SELECT stream.acquire_leases('err_nope', 'w');
SELECT stream.deregister_application('err_nope');

--
-- 3. acquire_leases: worker ids and lease durations
--
SELECT count(*) FROM stream.acquire_leases('err_app', '', '1 minute');
SELECT count(*) FROM stream.acquire_leases('err_app', NULL, '1 minute');
SELECT count(*) FROM stream.acquire_leases('err_app', 'w', '0');
SELECT count(*) FROM stream.acquire_leases('err_app', 'w', '-1 second');
SELECT count(*) FROM stream.acquire_leases('err_app', 'w', NULL);

--
-- 4. checkpoints never move backwards, belong to their shard, end a shard
--    only when it is closed; a refused one changes nothing
--
SELECT sequence_number AS seq_s0b FROM stream.read_shard('err_s', 'shardId-000000000000') OFFSET 1 LIMIT 1 \gset
SELECT stream.checkpoint('err_app', 'w', 'shardId-000000000000', :'seq_s0b');
SELECT pg_temp.try(format($q$SELECT stream.checkpoint('err_app', 'w', 'shardId-000000000000', %L)$q$, :'seq_s0'));
SELECT pg_temp.try(format($q$SELECT stream.checkpoint('err_app', 'w', 'shardId-000000000000', %L)$q$, :'seq_s1'));
SELECT pg_temp.try(format($q$SELECT stream.checkpoint('err_app', 'w', 'shardId-000000000000', %L)$q$, :'seq_other'));
SELECT stream.checkpoint('err_app', 'w', 'shardId-000000000000', 'garbage');
SELECT stream.checkpoint('err_app', 'w', 'shardId-000000000000', 'SHARD_END');
SELECT stream.checkpoint('err_app', 'w', 'shardId-000000000000', NULL);
SELECT checkpoint = :'seq_s0b' AS checkpoint_unchanged
FROM stream.application_leases WHERE application_name = 'err_app' AND lease_key = 'shardId-000000000000';
-- the same checkpoint again is accepted; the lease iterator resumes after it
SELECT stream.checkpoint('err_app', 'w', 'shardId-000000000000', :'seq_s0b');
SELECT cardinality(records) AS after_checkpoint
FROM stream.get_records(stream.get_lease_iterator('err_app', 'w', 'shardId-000000000000'));
SELECT stream.checkpoint('err_app', 'other_worker', 'shardId-000000000000', :'seq_s0b');
SELECT stream.release_leases('err_app', 'w') AS released;
SELECT stream.release_leases('err_app', 'w') AS released_again;
SELECT stream.deregister_application('err_app');

\i :abs_srcdir/sql/fixtures/err_streams_end.psql
