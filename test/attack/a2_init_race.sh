#!/usr/bin/env bash
# ATTACK: a counter's initialisation computes its start (database_start) and
# only then re-finds the entry under shared->lock.  If, in between, the entry
# is evicted (stream.max_shards full) after another backend initialised it
# and handed out numbers, and a third backend re-created it uninitialised,
# the first backend initialises the new entry with its stale start: numbers
# are handed out again.  gdb holds backends at seqalloc.c:627 to force the
# schedule.  Needs stream.max_shards = 16 (set by a1_unique.py) and gdb.
set -u
source "$(dirname "$0")/../../scripts/env.sh"
DB=stream_attack_race
P="psql -X -qAt -d $DB"
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
$P -c "CREATE EXTENSION stream" -c "SELECT stream.create_stream('a',1)" >/dev/null
for i in $(seq 0 19); do $P -c "SELECT stream.create_stream('o$i',1)" >/dev/null; done
SO=$($PG_BIN/pg_config --pkglibdir 2>/dev/null)/stream.so
LINE=$(grep -n 'start = database_start(mark);' "$(dirname "$0")/../../src/seqalloc.c" | cut -d: -f1); LINE=$((LINE+2))
rm -f /tmp/race_go_*
# Backend X: pause after computing its start
hold() {  # $1 name ; runs the put in background, holds backend at the line until /tmp/race_go_$1
  local name=$1 sql=$2
  coproc_out=/tmp/race_out_$name
  ( $P -c "SELECT pg_backend_pid()" -c "SELECT pg_sleep(2)" -c "$sql" > $coproc_out 2>&1 ) &
  sleep 0.7
  local pid=$(head -1 $coproc_out)
  gdb -p $pid -batch -q -ex "break seqalloc.c:$LINE" -ex continue \
      -ex "shell while [ ! -f /tmp/race_go_$name ]; do sleep 0.1; done" -ex "delete" -ex detach >/tmp/race_gdb_$name 2>&1 &
  sleep 3
}
hold X "SELECT sequence_number FROM stream.put_record('a','x','\x01')"
echo "X held: $(grep -c 'Breakpoint 1,' /tmp/race_gdb_X)"
# Y: initialises the entry, takes numbers, rolls back
Y=$($P -c "BEGIN" -c "SELECT sequence_number FROM stream.put_record('a','y','\x01')" -c "ROLLBACK")
echo "Y took $Y (rolled back)"
# evict: puts on 20 other shards
for i in $(seq 0 19); do $P -c "SELECT 1 FROM stream.put_record('o$i','k','\x01')" >/dev/null; done
# W: re-creates the entry for 'a', held before initialising
hold W "SELECT sequence_number FROM stream.put_record('a','w','\x01')"
echo "W held: $(grep -c 'Breakpoint 1,' /tmp/race_gdb_W)"
touch /tmp/race_go_X; sleep 2
touch /tmp/race_go_W; sleep 2
wait
X=$(tail -1 /tmp/race_out_X); W=$(tail -1 /tmp/race_out_W)
echo "X got $X, W got $W, Y had $Y"
if [ "$X" = "$Y" ] || [ "$W" = "$Y" ]; then echo "BUG: sequence number reused"; exit 1; fi
echo "held"; exit 0
