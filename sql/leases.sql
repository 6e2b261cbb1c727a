--
-- leases: consumer applications' lease calls read shard ids as
-- get_shard_iterator does.  (Balancing, fencing and failover:
-- specs/lease_fencing.spec, test/scripts/70_leases.py.)
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS stream;
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/fixtures/err_streams.psql

-- lease shard ids are read the same way
SELECT stream.register_application('err_app', 'err_s');
SELECT count(*) FROM stream.acquire_leases('err_app', 'w', '1 minute');
SELECT stream.get_lease_iterator('err_app', 'w', 'shardId-0000000000001') IS NOT NULL AS lease_of_shard_1;
SELECT stream.checkpoint('err_app', 'w', 'shardId-000000000000', :'seq_s0');
SELECT stream.checkpoint('err_app', 'w', '0', :'seq_s0');
SELECT stream.checkpoint('err_app', 'w', 'shardId-99999999999', :'seq_s0');
SELECT stream.checkpoint('err_app', 'w', 'shardId-2147483648', :'seq_s0');
SELECT stream.checkpoint('err_app', 'w', '', :'seq_s0');
SELECT stream.checkpoint('err_app', 'w', NULL, :'seq_s0');
SELECT stream.deregister_application('err_app');

\i :abs_srcdir/sql/fixtures/err_streams_end.psql
