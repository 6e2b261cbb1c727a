#!/usr/bin/env bash
# Owners and grants of applications and registered consumers survive
# pg_dump / pg_restore.  They are stored as regrole in config-dumped tables,
# so a dump names the roles and the restore gives them to the roles of those
# names (as the GRANTs of a dump do).  In the restored database: the owner,
# its grantee and the consumer's owner keep their rights and checkpoints, a
# stranger still finds nothing (42704), the catalogs still grant PUBLIC
# nothing.  Also: a dump whose applications have no owner column (made
# before owners existed) restores them to the restoring role.
set -u
cd "$(dirname "$0")/../.."
source scripts/env.sh
A=stream_dump_owner_a; B=stream_dump_owner_b; C=stream_dump_owner_c
OWN=stream_dump_owner; GR=stream_dump_grantee; STR=stream_dump_stranger
WORK=$(mktemp -d /tmp/stream_dump_owner.XXXXXX)
FAILED=0
fail() { echo "FAIL: $*"; FAILED=1; }
adm() { psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "SET client_min_messages=warning" "$@" >/dev/null; }
drop_all() {
    adm -c "DROP DATABASE IF EXISTS $A WITH (FORCE)" -c "DROP DATABASE IF EXISTS $B WITH (FORCE)" \
        -c "DROP DATABASE IF EXISTS $C WITH (FORCE)" \
        -c "DROP ROLE IF EXISTS $OWN" -c "DROP ROLE IF EXISTS $GR" -c "DROP ROLE IF EXISTS $STR" || true
}
trap 'drop_all; rm -rf "$WORK"' EXIT
drop_all
adm -c "CREATE DATABASE $A" -c "CREATE DATABASE $B" -c "CREATE DATABASE $C" \
    -c "CREATE ROLE $OWN LOGIN" -c "CREATE ROLE $GR LOGIN" -c "CREATE ROLE $STR LOGIN"

# $1 database, $2 role (empty: superuser), rest: psql arguments; prints the result
sq() { local db=$1 role=$2; shift 2; psql -X -qAt -v ON_ERROR_STOP=1 -d "$db" ${role:+-U "$role"} "$@" 2>&1; }

sq $A "" -c "CREATE EXTENSION stream" -c "SELECT stream.create_stream('s', 2)" \
    -c "SELECT stream.grant_stream_access('s', r, 'read') FROM unnest(ARRAY['$OWN', '$GR', '$STR']::regrole[]) r" >/dev/null
SEQ=$(sq $A "" -c "SELECT sequence_number FROM stream.put_record('s', 'k', '\x01', '0')")
sq $A $OWN -c "SELECT stream.register_application('app', 's')" \
    -c "SELECT count(*) FROM stream.acquire_leases('app', 'w', '1 hour')" \
    -c "SELECT stream.checkpoint('app', 'w', 'shardId-000000000000', '$SEQ')" \
    -c "SELECT stream.release_leases('app', 'w')" \
    -c "SELECT stream.grant_application_access('app', '$GR')" \
    -c "SELECT stream.register_stream_consumer('s', 'con')" >/dev/null || fail "set-up in $A"

pg_dump -Fc -f "$WORK/a.dump" $A 2>"$WORK/dump.err" || { cat "$WORK/dump.err"; fail "pg_dump"; }
pg_restore -d $B "$WORK/a.dump" 2>"$WORK/restore.err" || { cat "$WORK/restore.err"; fail "pg_restore"; }

check_db() {   # $1 database, $2 expected owner of app
    local db=$1 owner=$2 got
    got=$(sq $db "" -c "SELECT application_name || ':' || owner FROM stream.applications")
    [ "$got" = "app:$owner" ] || fail "$db: applications are '$got', expected app:$owner"
    got=$(sq $db "" -c "SELECT checkpoint FROM stream.leases WHERE application_name = 'app' AND shard_index = 0")
    [ "$got" = "$SEQ" ] || fail "$db: the checkpoint is '$got', expected $SEQ"
    got=$(sq $db $STR -c "SELECT count(*) FROM stream.acquire_leases('app', 'x', '1 hour')")
    case "$got" in *"ResourceNotFoundException: Application app not found."*) ;;
        *) fail "$db: a stranger's acquire_leases gave: $got" ;; esac
    got=$(sq $db $STR -c "SELECT count(*) FROM stream.leases")
    case "$got" in *"permission denied"*) ;; *) fail "$db: a stranger reads stream.leases: $got" ;; esac
    got=$(sq $db $STR -c "SELECT stream.deregister_stream_consumer('s', 'con')")
    case "$got" in *"AccessDeniedException"*) ;; *) fail "$db: a stranger's deregister_stream_consumer gave: $got" ;; esac
}

check_db $B $OWN
got=$(sq $B $GR -c "SELECT stream.get_lease_iterator('app', 'w', 'shardId-000000000000') IS NULL" 2>&1)
case "$got" in *"LeaseLostException"*) ;; *) fail "$B: the grantee's get_lease_iterator before acquiring gave: $got" ;; esac
got=$(sq $B $GR -c "SELECT count(*) FROM stream.acquire_leases('app', 'w', '1 hour')" \
              -c "SELECT stream.get_lease_iterator('app', 'w', 'shardId-000000000000') IS NOT NULL")
[ "$got" = "$(printf '2\nt')" ] || fail "$B: the restored grantee could not run a worker: $got"
got=$(sq $B $OWN -c "SELECT owner || ' ' || grantees::text FROM stream.list_applications()")
[ "$got" = "$OWN {$GR}" ] || fail "$B: the owner's list_applications shows '$got'"
got=$(sq $B $GR -c "SELECT stream.deregister_application('app')")
case "$got" in *"AccessDeniedException"*) ;; *) fail "$B: the grantee's deregister_application gave: $got" ;; esac
got=$(sq $B "" -c "SELECT owner FROM stream.stream_consumers")
[ "$got" = "$OWN" ] || fail "$B: the consumer's owner is '$got'"
sq $B $OWN -c "SELECT stream.deregister_stream_consumer('s', 'con')" -c "SELECT stream.deregister_application('app')" \
    >/dev/null || fail "$B: the restored owner could not deregister its consumer and application"

# a dump from before owners: no owner column in the COPY of stream.applications
pg_dump -f "$WORK/a.sql" $A 2>>"$WORK/dump.err" || fail "pg_dump (plain)"
awk '
    /^COPY stream\.applications \(.*, owner\) FROM stdin;$/ { sub(/, owner\)/, ")"); inapp = 1; print; next }
    inapp && /^\\\.$/ { inapp = 0 }
    inapp { sub(/\t[^\t]*$/, "") }
    { print }' "$WORK/a.sql" >"$WORK/old.sql"
grep -q '^COPY stream.applications (application_name, stream_id, initial_position, initial_timestamp, created_at) FROM stdin;$' "$WORK/old.sql" ||
    fail "could not make a dump without the owner column"
psql -X -q -v ON_ERROR_STOP=1 -d $C -f "$WORK/old.sql" >/dev/null 2>"$WORK/old.err" || { cat "$WORK/old.err"; fail "restoring the old-style dump"; }
check_db $C postgres

[ $FAILED = 0 ] && echo "32_dump_restore_owners: OK" || echo "32_dump_restore_owners: FAILED"
exit $FAILED
