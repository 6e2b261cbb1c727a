#!/usr/bin/env bash
# ATTACK: alternate a throw-away cluster between with and without
# shared_preload_libraries, with rolled-back puts, crashes, hour-bucket
# independent checks: every returned number (rolled back or committed) is
# unique; a reader holding an iterator (text kept across restarts, resumed
# AFTER_SEQUENCE_NUMBER if it expires) reads every committed record.
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
TMP="$(mktemp -d /tmp/stream-switch.XXXXXX)"; chmod 755 "$TMP"
export STREAM_PGDATA="$TMP/data" STREAM_PGSOCK="$TMP/sock" STREAM_PGPORT=5517
cleanup() { bash "$ROOT/scripts/cluster.sh" destroy >/dev/null 2>&1 || true; rm -rf "$TMP"; }
trap cleanup EXIT
source "$ROOT/scripts/env.sh"
start() { STREAM_PRELOAD="$1" bash "$ROOT/scripts/cluster.sh" restart >/dev/null 2>&1 || STREAM_PRELOAD="$1" bash "$ROOT/scripts/cluster.sh" start >/dev/null 2>&1; }
start ""
psql -X -qAt -d postgres -c "CREATE DATABASE sw" >/dev/null
P="psql -X -qAt -d sw"
$P -c "CREATE EXTENSION stream" -c "SELECT stream.create_stream('s', 1)" >/dev/null
IT=$($P -c "SELECT stream.get_shard_iterator('s', 'shardId-000000000000', 'LATEST')")
: > $TMP/nums; : > $TMP/cnums; : > $TMP/committed; : > $TMP/read
LAST=""
read_all() {
  while true; do
    out=$($P -c "SELECT g.next_shard_iterator || ' ' || coalesce(r.sequence_number, '-') || ' ' || coalesce(r.partition_key, '-') FROM stream.get_records('$IT', 10000) g LEFT JOIN LATERAL unnest(g.records) WITH ORDINALITY r(sequence_number, a, partition_key, d, o) ON true ORDER BY r.o" 2>&1)
    if echo "$out" | grep -q Expired; then
      if [ -n "$LAST" ]; then IT=$($P -c "SELECT stream.get_shard_iterator('s', 'shardId-000000000000', 'AFTER_SEQUENCE_NUMBER', '$LAST')"); else IT=$($P -c "SELECT stream.get_shard_iterator('s', 'shardId-000000000000', 'TRIM_HORIZON')"); fi
      continue
    fi
    n=0
    while read -r it seq key; do
      IT=$it
      [ "$seq" = "-" ] && continue
      echo "$key" >> $TMP/read; LAST=$seq; n=$((n+1))
    done <<< "$out"
    [ $n = 0 ] && break
  done
}
for round in $(seq 1 8); do
  case $((round % 4)) in 0) pre="";; 1) pre="stream";; 2) pre="";; 3) pre="stream";; esac
  for j in 1 2 3; do
    $P -c "BEGIN" -c "SELECT sequence_number FROM stream.put_records('s', array_fill('rb'::text, array[300]), array_fill('\x00'::bytea, array[300]))" -c "ROLLBACK" >> $TMP/nums
    read_all
    $P -c "SELECT sequence_number FROM stream.put_record('s', 'c$round-$j', '\x01')" | tee -a $TMP/nums >> $TMP/cnums
    echo "c$round-$j" >> $TMP/committed
    read_all
  done
  $P -c "BEGIN" -c "SELECT sequence_number FROM stream.put_records('s', array_fill('rb'::text, array[300]), array_fill('\x00'::bytea, array[300]))" -c "ROLLBACK" >> $TMP/nums
  read_all
  if [ $((round % 3)) = 0 ]; then kill -9 "$(head -1 $STREAM_PGDATA/postmaster.pid)"; sleep 2; fi
  start "$pre"
  echo "round $round: preload='$pre'"
done
read_all
dups=$(sort $TMP/nums | uniq -d | wc -l); cdups=$(sort $TMP/nums | uniq -d | sort - $TMP/cnums | uniq -d | wc -l); echo "committed numbers also handed out to another put: $cdups"
miss=$(comm -23 <(sort $TMP/committed) <(sort -u $TMP/read) | wc -l)
echo "numbers $(wc -l < $TMP/nums), duplicates $dups; committed $(wc -l < $TMP/committed), read $(sort -u $TMP/read | wc -l), missed $miss"
[ "$dups" = 0 ] && [ "$miss" = 0 ]
