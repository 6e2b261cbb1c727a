#!/usr/bin/env bash
# A counter rebuilt after eviction never starts below a number it handed out,
# whatever the schedule.  shard_state_locked computes a new counter's start
# (seqmark_startup_locked) and then re-finds the entry under shared->lock; if in
# between another backend initialised the entry, handed out numbers (rolled
# back, so readers may pass them), the entry was evicted (stream.max_shards
# full) and a third backend re-created it, the first initialises the new
# entry with its stale start and hands the rolled-back number out again.
# gdb holds backends at that point to force the schedule (skipped without
# gdb).  Restarts the cluster with stream.max_shards = 16 and restores it.
set -u
cd "$(dirname "$0")/../.."
source scripts/env.sh
command -v gdb >/dev/null || { echo "25_counter_init_race: SKIPPED (no gdb)"; exit 0; }
psql -X -qAt -d postgres -c "ALTER SYSTEM SET stream.max_shards = 16" >/dev/null
bash scripts/cluster.sh restart >/dev/null
# the backends' outputs, gdb's logs and the go-files in a directory of this run
# only, so that checkouts running the test at once do not share them
RACE="$(mktemp -d /tmp/stream_counter_race.XXXXXX)"
restore() {
    psql -X -qAt -d postgres -c "ALTER SYSTEM RESET stream.max_shards" >/dev/null
    bash scripts/cluster.sh restart >/dev/null
    rm -rf "$RACE"
}
trap restore EXIT
DB=stream_attack_race
P="psql -X -qAt -d $DB"
psql -X -q -d postgres -c "SET client_min_messages=warning" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
$P -c "CREATE EXTENSION stream" -c "SELECT stream.create_stream('a',1)" >/dev/null
for i in $(seq 0 19); do $P -c "SELECT stream.create_stream('o$i',1)" >/dev/null; done
LINE=$(grep -n 'start = seqmark_startup_locked(mark);' src/streams/seqalloc.c | cut -d: -f1)
# the schedule needs that line: fail rather than hold the backends nowhere
[ -n "$LINE" ] || { echo "25_counter_init_race: FAILED (the start computation is not in src/streams/seqalloc.c)"; exit 1; }
LINE=$((LINE+3))   # the LWLockAcquire that re-finds the entry
# Backend X: pause after computing its start
hold() {  # $1 name ; runs the put in background, holds backend at the line until $RACE/go_$1
  local name=$1 sql=$2
  coproc_out=$RACE/out_$name
  ( $P -c "SELECT pg_backend_pid()" -c "SELECT pg_sleep(2)" -c "$sql" > "$coproc_out" 2>&1 ) &
  sleep 0.7
  local pid=$(head -1 "$coproc_out")
  gdb -p $pid -batch -q -ex "break streams/seqalloc.c:$LINE" -ex continue \
      -ex "shell while [ ! -f $RACE/go_$name ]; do sleep 0.1; done" -ex "delete" -ex detach >"$RACE/gdb_$name" 2>&1 &
  sleep 3
}
hold X "SELECT sequence_number FROM stream.put_record('a','x','\x01')"
echo "X held: $(grep -c 'Breakpoint 1,' "$RACE/gdb_X")"
# Y: initialises the entry, takes numbers, rolls back
Y=$($P -c "BEGIN" -c "SELECT sequence_number FROM stream.put_record('a','y','\x01')" -c "ROLLBACK")
echo "Y took $Y (rolled back)"
# evict: puts on 20 other shards
for i in $(seq 0 19); do $P -c "SELECT 1 FROM stream.put_record('o$i','k','\x01')" >/dev/null; done
# W: re-creates the entry for 'a', held before initialising
hold W "SELECT sequence_number FROM stream.put_record('a','w','\x01')"
echo "W held: $(grep -c 'Breakpoint 1,' "$RACE/gdb_W")"
touch "$RACE/go_X"; sleep 2
touch "$RACE/go_W"; sleep 2
wait
X=$(tail -1 "$RACE/out_X"); W=$(tail -1 "$RACE/out_W")
echo "X got $X, W got $W, Y had $Y"
if [ "$X" = "$Y" ] || [ "$W" = "$Y" ]; then echo "25_counter_init_race: FAILED (sequence number $Y handed out twice)"; exit 1; fi
psql -X -q -d postgres -c "DROP DATABASE $DB WITH (FORCE)"
echo "25_counter_init_race: OK"; exit 0
