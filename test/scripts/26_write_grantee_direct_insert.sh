#!/usr/bin/env bash
# A role granted 'write' on a stream may put records, and nothing else: no
# put of another producer may fail because of what it does.  The grant is
# INSERT on the stream's table, so the grantee can INSERT rows directly with
# sequence numbers of its choosing: the numbers just after its own put's are
# the next ones the counter hands out, and every other producer's put then
# fails with a duplicate key (and records can be slipped in below where
# readers already are).
set -u
cd "$(dirname "$0")/../.."
source scripts/env.sh
DB=stream_direct_insert
psql -X -q -d postgres -c "SET client_min_messages=warning" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" \
     -c "DROP ROLE IF EXISTS direct_writer" -c "CREATE DATABASE $DB" -c "CREATE ROLE direct_writer LOGIN"
P="psql -X -qAt -d $DB"
$P -c "CREATE EXTENSION stream" -c "SELECT stream.create_stream('s', 1)" \
   -c "SELECT stream.grant_stream_access('s', 'direct_writer', 'write')" >/dev/null
$P -U direct_writer >/dev/null 2>&1 <<'SQL'
SELECT (stream_internal._sequence_parts((stream.put_record('s', 'k', '\x01')).sequence_number)).seq AS s \gset
INSERT INTO stream_data.s1 (shard_id, seq, arrival, partition_key, data)
SELECT 0, :s + g, now(), 'injected', '\x00' FROM generate_series(1, 1000) g;
SQL
fails=0
for i in 1 2 3; do
    r=$($P -c "SELECT count(*) FROM stream.put_records('s', array_fill('v'::text, array[100]), array_fill('\x00'::bytea, array[100])) WHERE error_code IS NULL" 2>&1)
    [ "$r" = 100 ] || { echo "put $i by another producer failed: $(echo "$r" | head -1)"; fails=1; }
done
psql -X -q -d postgres -c "DROP DATABASE $DB WITH (FORCE)" -c "DROP ROLE direct_writer"
[ $fails = 0 ] && echo "26_write_grantee_direct_insert: OK" || echo "26_write_grantee_direct_insert: FAILED"
exit $fails
