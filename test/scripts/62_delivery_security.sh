#!/usr/bin/env bash
# Delivery streams must never run a user's code with the worker's
# superuser rights, and must stop delivering when the owner loses access.
set -euo pipefail
DB=stream_dsec_test
export PGOPTIONS="-c client_min_messages=warning"
fail() { echo "FAIL: $*"; exit 1; }
psql -X -qAt -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
trap 'psql -X -qAt -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1; psql -X -qAt -d postgres -c "DROP ROLE IF EXISTS dsec_admin" >/dev/null 2>&1 || true' EXIT
q() { psql -X -v ON_ERROR_STOP=1 -qAt -d $DB "$@"; }
q -c "CREATE EXTENSION stream" -c "DROP ROLE IF EXISTS dsec_admin" -c "CREATE ROLE dsec_admin LOGIN" \
  -c "GRANT EXECUTE ON FUNCTION stream.create_delivery_stream(text, text, text, regclass, text, regtype, text, int, int, text, text, jsonb, regprocedure, text, text) TO dsec_admin" \
  -c "CREATE SCHEMA a AUTHORIZATION dsec_admin" -c "SELECT stream.create_stream('victim', 1)" \
  -c "SELECT stream.grant_stream_access('victim', 'dsec_admin', 'read')" >/dev/null

# 1. a domain CHECK in the destination's columns runs as the owner, not as superuser
q -c "SET ROLE dsec_admin" -c "
CREATE TABLE a.log(usr text, su bool);
CREATE FUNCTION a.probe(v text) RETURNS bool LANGUAGE plpgsql AS \$\$ BEGIN
  INSERT INTO a.log SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user;
  BEGIN EXECUTE 'ALTER ROLE dsec_admin SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
  RETURN true; END \$\$;
CREATE DOMAIN a.evil AS text CHECK (a.probe(VALUE));
CREATE TABLE a.dest(x a.evil);
SELECT stream.create_delivery_stream('d1', destination_table => 'a.dest', buffer_interval_seconds => 0);
SELECT stream.put_delivery_record('d1', convert_to('{\"x\":\"hi\"}', 'UTF8'));" >/dev/null
for _ in $(seq 1 40); do
  [ "$(q -c "SELECT count(*) FROM a.dest")" -ge 1 ] && break
  sleep 0.25
done
[ "$(q -c "SELECT count(*) FROM a.dest")" = 1 ] || fail "the record was not delivered to the table"
[ "$(q -c "SELECT string_agg(DISTINCT usr || '/' || su, ',') FROM a.log")" = "dsec_admin/false" ] ||
  fail "the domain check ran as $(q -c "SELECT string_agg(DISTINCT usr || '/' || su, ',') FROM a.log")"
[ "$(q -c "SELECT rolsuper FROM pg_roles WHERE rolname = 'dsec_admin'")" = f ] || fail "dsec_admin became superuser"
echo "[62_delivery_security] conversions run as the delivery stream's owner"

# 2. revoking read access on the source stream stops delivery
q -c "SET ROLE dsec_admin" -c "CREATE TABLE a.copy(data jsonb)" \
  -c "SELECT stream.create_delivery_stream('d2', source_stream_name => 'victim', destination_table => 'a.copy', buffer_interval_seconds => 0, starting_position => 'TRIM_HORIZON')" >/dev/null
q -c "SELECT stream.put_record('victim', 'k', convert_to('{\"data\": {\"n\": 1}}', 'UTF8'))" >/dev/null
for _ in $(seq 1 40); do
  [ "$(q -c "SELECT count(*) FROM a.copy")" -ge 1 ] && break
  sleep 0.25
done
[ "$(q -c "SELECT count(*) FROM a.copy")" = 1 ] || fail "the first record was not delivered"
q -c "SELECT stream.revoke_stream_access('victim', 'dsec_admin', 'read')" \
  -c "SELECT stream.put_record('victim', 'k', convert_to('{\"data\": {\"secret\": true}}', 'UTF8'))" >/dev/null
sleep 3
[ "$(q -c "SELECT count(*) FROM a.copy")" = 1 ] || fail "a record was delivered after the owner lost read access"
err=$(q -c "SELECT last_error FROM stream.delivery_stream_status WHERE delivery_stream_name = 'd2'")
case "$err" in *AccessDeniedException*) ;; *) fail "expected AccessDeniedException in the status view, got '$err'" ;; esac
echo "[62_delivery_security] a revoke stops delivery and shows in the status view"
echo "62_delivery_security: ok"
