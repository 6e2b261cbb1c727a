--
-- access: grant_stream_access / revoke_stream_access with bad access levels
-- and roles, and a role whose name needs quoting.  (Who may do what:
-- test/pgtap/ and test/scripts/05_privilege_audit.py.)
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS stream;
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/fixtures/err_streams.psql

--
-- 1. a bad access level or role
--
SELECT stream.grant_stream_access('err_s', 'postgres', 'admin');
SELECT stream.grant_stream_access('err_s', 'postgres', '');
SELECT stream.grant_stream_access('err_s', 'err_no_such_role', 'read');
-- roles that do not exist: 42704, not a syntax error from the GRANT built with them
SELECT pg_temp.try($q$SELECT stream.grant_stream_access('err_s', 0::oid::regrole, 'read')$q$);
SELECT pg_temp.try($q$SELECT stream.revoke_stream_access('err_s', 4294967295::oid::regrole)$q$);
SELECT pg_temp.try($q$SELECT stream.revoke_stream_access('err_s', NULL)$q$);
-- a role whose name needs quoting
DROP ROLE IF EXISTS "err Role";
CREATE ROLE "err Role";
SELECT stream.grant_stream_access('err_s', '"err Role"', 'read');
SELECT has_table_privilege('err Role', format('stream_data.s%s', (SELECT stream_id FROM stream.streams WHERE stream_name = 'err_s')), 'SELECT') AS quoted_role_granted;
SELECT stream.revoke_stream_access('err_s', '"err Role"');
DROP ROLE "err Role";

\i :abs_srcdir/sql/fixtures/err_streams_end.psql
