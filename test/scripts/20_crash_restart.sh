#!/usr/bin/env bash
# Crash and restart test for the stream extension.
#
# WARNING: this test kills the postmaster of the cluster described by
# scripts/env.sh (STREAM_PGDATA / STREAM_PGPORT / STREAM_PGSOCK).  Do not run it
# against a cluster that other people are using; for a private one:
#   STREAM_PGDATA=/tmp/c2/data STREAM_PGSOCK=/tmp/c2/sock STREAM_PGPORT=5496 \
#       bash scripts/cluster.sh start
#   STREAM_PGDATA=/tmp/c2/data STREAM_PGSOCK=/tmp/c2/sock STREAM_PGPORT=5496 \
#       test/scripts/20_crash_restart.sh
#
# Phases, each with a transaction left open (in flight) at the moment of the stop:
#   1. crash:     kill -9 of the postmaster, start again (crash recovery)
#   2. clean:     pg_ctl restart -m fast
#   3. immediate: pg_ctl stop -m immediate, start again (crash recovery)
#   4. backend:   kill -9 of the in-flight transaction's backend; the postmaster
#                 resets shared memory and runs crash recovery by itself
# After each restart it checks:
#   * every record committed before the stop is still readable, with the same
#     shard, sequence number and data (read_shard and get_records);
#   * no record of the in-flight transaction ever appears;
#   * every new put gets a sequence number greater than every old one, per shard;
#   * the new records are readable too (readers are not held back by the
#     transaction that was in flight at the stop).
# The cluster is left running.
set -euo pipefail
export LC_ALL=C

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd "$HERE/../.." && pwd -P)"
# shellcheck source=scripts/env.sh
source "$ROOT/scripts/env.sh"

DB=stream_crash_test
STREAM=crash
NSHARDS=4
T0=$(date +%s)
WORK="$(mktemp -d /tmp/stream_crash_test.XXXXXX)"
chmod 755 "$WORK"
FAILED=0
BG_PIDS=()

say()  { printf '[20_crash_restart %3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
fail() { printf 'FAIL: %s\n' "$*"; FAILED=1; }
die()  { printf 'FAIL: %s\n' "$*"; FAILED=1; exit 1; }

as_pg() {
    if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else (cd / && "$@"); fi
}

# psql with a bounded run time; all output unaligned, tuples only.
PSQL_OPTS=(-X -q -At -v ON_ERROR_STOP=1)
export PGOPTIONS="-c statement_timeout=60s -c client_min_messages=warning"
sql()    { timeout 90 psql "${PSQL_OPTS[@]}" -d "$DB" "$@"; }
sqladm() { timeout 90 psql "${PSQL_OPTS[@]}" -d postgres "$@"; }

server_up() { pg_isready -q -h "$PGHOST" -p "$PGPORT" -d postgres; }

ensure_running() {
    if ! server_up; then
        say "starting the cluster (scripts/cluster.sh start)"
        bash "$ROOT/scripts/cluster.sh" start >"$WORK/cluster-start.log" 2>&1 ||
            { cat "$WORK/cluster-start.log"; return 1; }
    fi
}

cleanup() {
    local rc=$?
    local p
    for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    ensure_running || { echo "FAIL: could not bring the cluster back up"; rc=1; }
    if [ "${STREAM_TEST_KEEP_DB:-0}" != 1 ]; then
        sqladm -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
    if [ "$rc" != 0 ] || [ "$FAILED" != 0 ]; then
        echo "20_crash_restart: FAILED ($(( $(date +%s) - T0 ))s)"
        exit 1
    fi
    echo "20_crash_restart: OK ($(( $(date +%s) - T0 ))s)"
    exit 0
}
trap cleanup EXIT

# ---------------------------------------------------------------------------
# helpers

# put N committed records with data "<tag>-<i>" (mix of put_record and put_records,
# in several transactions); append "shard|seq|data" lines to $WORK/expected
put_committed() {   # $1 = tag, $2 = count
    local tag=$1 n=$2 half=$(( $2 / 2 ))
    sql >>"$WORK/expected" <<SQL
BEGIN;
SELECT p.shard_id, p.sequence_number, '$tag-' || g
FROM generate_series(1, $half) g,
     LATERAL stream.put_record('$STREAM', 'pk-' || (g % 23), convert_to('$tag-' || g, 'UTF8')) p
ORDER BY g;
COMMIT;
BEGIN;
SELECT p.shard_id, p.sequence_number, convert_from(a.ds[p.ord], 'UTF8')
FROM (SELECT array_agg('pk-' || (g % 23) ORDER BY g) AS pks,
             array_agg(convert_to('$tag-' || g, 'UTF8') ORDER BY g) AS ds
      FROM generate_series($half + 1, $n) g) a,
     LATERAL stream.put_records('$STREAM', a.pks, a.ds)
             WITH ORDINALITY AS p(shard_id, sequence_number, error_code, error_message, ord)
ORDER BY p.ord;
COMMIT;
SQL
}

# open a transaction that puts one record per shard (data "inflight-<tag>-<shard>")
# and stays open; its "shard|seq" lines go to $WORK/inflight-<tag>
start_inflight() {   # $1 = tag
    local tag=$1
    local out="$WORK/inflight-$tag"
    rm -f "$out" "$out.tmp"
    cat >"$WORK/inflight-$tag.sql" <<SQL
SET statement_timeout = 0;
\o $WORK/inflight-$tag.pid
SELECT pg_backend_pid();
BEGIN;
\o $out.tmp
SELECT p.shard_id, p.sequence_number
FROM stream.list_shards('$STREAM') ls,
     LATERAL stream.put_record('$STREAM', 'inflight', convert_to('inflight-$tag-' || ls.shard_id, 'UTF8'),
                               ls.starting_hash_key::text) p;
\o
\! mv $out.tmp $out
SELECT pg_sleep(120);
COMMIT;
SQL
    timeout 150 psql -X -q -At -d "$DB" -f "$WORK/inflight-$tag.sql" >"$WORK/inflight-$tag.log" 2>&1 &
    INFLIGHT_PID=$!
    BG_PIDS+=("$INFLIGHT_PID")
    for _ in $(seq 1 100); do
        [ -s "$out" ] && break
        kill -0 "$INFLIGHT_PID" 2>/dev/null || break
        sleep 0.1
    done
    [ "$(wc -l <"$out" 2>/dev/null || echo 0)" = "$NSHARDS" ] ||
        die "in-flight transaction $tag did not put $NSHARDS records: $(cat "$WORK/inflight-$tag.log" "$out" 2>/dev/null)"
    [ "$(cut -d'|' -f1 "$out" | sort -u | wc -l)" = "$NSHARDS" ] ||
        fail "in-flight transaction $tag: put_record with explicit_hash_key = each shard's starting hash key did not reach all $NSHARDS shards: $(tr '\n' ' ' <"$out")"
    say "in-flight transaction $tag open: $(tr '\n' ' ' <"$out")"
}

# max old sequence number per shard: "shard|seq" lines into $WORK/maxseq
note_max() {
    sort -t'|' -k1,1 -k2,2 "$WORK/expected" |
        awk -F'|' '{m[$1]=$2} END {for (s in m) print s "|" m[s]}' | sort >"$WORK/maxseq"
}

# read every shard (read_shard) and compare with $WORK/expected
check_all_readable() {   # $1 = label
    local label=$1
    sql >"$WORK/actual" <<SQL
SELECT ls.shard_id, r.sequence_number, convert_from(r.data, 'UTF8')
FROM stream.list_shards('$STREAM') ls,
     LATERAL stream.read_shard('$STREAM', ls.shard_id, 'TRIM_HORIZON') r
ORDER BY 1, 2;
SQL
    sort -t'|' -k1,1 -k2,2 "$WORK/expected" >"$WORK/expected.sorted"
    if ! cmp -s "$WORK/expected.sorted" "$WORK/actual"; then
        fail "$label: records read back (read_shard) differ from the committed ones (< expected, > actual):"
        diff "$WORK/expected.sorted" "$WORK/actual" | head -20 || true
    else
        say "$label: all $(wc -l <"$WORK/actual") committed records readable with the same sequence numbers and data"
    fi
    if grep -q 'inflight-' "$WORK/actual"; then
        fail "$label: a record of a transaction that was in flight at the stop is visible: $(grep 'inflight-' "$WORK/actual" | head -5 | tr '\n' ' ')"
    fi
    # the same through get_shard_iterator(TRIM_HORIZON) + get_records, following
    # next_shard_iterator until 3 calls in a row return nothing
    sql >"$WORK/actual-gr" <<SQL
WITH RECURSIVE it(shard_id, iter, recs, n, empties) AS (
    SELECT ls.shard_id, stream.get_shard_iterator('$STREAM', ls.shard_id, 'TRIM_HORIZON'),
           NULL::stream.record[], 0, 0
    FROM stream.list_shards('$STREAM') ls
  UNION ALL
    SELECT it.shard_id, g.next_shard_iterator, g.records, it.n + 1,
           CASE WHEN coalesce(cardinality(g.records), 0) = 0 THEN it.empties + 1 ELSE 0 END
    FROM it, LATERAL stream.get_records(it.iter, 1000) g
    WHERE it.empties < 3 AND it.n < 200
)
SELECT it.shard_id, r.sequence_number, convert_from(r.data, 'UTF8')
FROM it, LATERAL unnest(it.recs) r
ORDER BY 1, 2;
SQL
    if ! cmp -s "$WORK/expected.sorted" "$WORK/actual-gr"; then
        fail "$label: records read with get_shard_iterator(TRIM_HORIZON)+get_records differ from the committed ones:"
        diff "$WORK/expected.sorted" "$WORK/actual-gr" | head -20 || true
    fi
}

# put new records and check each new sequence number > every old one on its shard
check_new_greater() {   # $1 = label, $2 = tag
    local label=$1 tag=$2 before
    note_max
    before=$(wc -l <"$WORK/expected")
    put_committed "$tag" 80
    tail -n +"$(( before + 1 ))" "$WORK/expected" >"$WORK/new"
    local bad
    # string comparison (same width); awk would compare 40-digit numbers as doubles
    bad=$(awk -F'|' 'NR==FNR {m[$1]=$2; next} !($1 in m) {next} (($2 "") <= (m[$1] "")) {print}' \
        "$WORK/maxseq" "$WORK/new" | head -5)
    if [ -n "$bad" ]; then
        fail "$label: new sequence numbers not greater than the last old one on their shard; old maxima: $(tr '\n' ' ' <"$WORK/maxseq"); offending new puts: $(echo "$bad" | tr '\n' ' ')"
    else
        say "$label: $(wc -l <"$WORK/new") new puts, all sequence numbers above the old maxima per shard"
    fi
    # and above the in-flight transaction's numbers of the same shard? not required (they were never
    # visible), but they must not collide with an existing committed record: checked by the read-back.
}

# wait for every process in "$@" to exit (up to $2... seconds); print the survivors
wait_gone() {   # timeout pid...
    local t=$1; shift
    local end=$(( $(date +%s) + t )) p alive
    while :; do
        alive=()
        for p in "$@"; do kill -0 "$p" 2>/dev/null && alive+=("$p"); done
        [ ${#alive[@]} = 0 ] && return 0
        [ "$(date +%s)" -ge "$end" ] && { echo "${alive[*]}"; return 1; }
        sleep 0.2
    done
}

read_old_iterator() {   # $1 = label: the iterator saved before the stop still works (informational)
    local label=$1 out
    if out=$(sql -c "SELECT count(*) FROM unnest((SELECT records FROM stream.get_records('$(cat "$WORK/iterator")')))" 2>&1); then
        say "$label: (info) an iterator obtained before the stop still works, returned $out records"
    else
        say "$label: (info) an iterator obtained before the stop is rejected: $(echo "$out" | head -1)"
        case "$out" in
            *ExpiredIteratorException*|*InvalidArgumentException*) ;;
            *) fail "$label: an iterator from before the stop fails with an unexpected error: $out" ;;
        esac
    fi
}

# ---------------------------------------------------------------------------
say "cluster: PGDATA=$PGDATA PGHOST=$PGHOST PGPORT=$PGPORT"
ensure_running || die "cluster not running and could not be started"
[ -f "$PGDATA/postmaster.pid" ] || die "no $PGDATA/postmaster.pid: the running server is not the one of PGDATA=$PGDATA"
# safety: the postmaster we are going to kill must be the one we connect to
if [ "$(sed -n 4p "$PGDATA/postmaster.pid")" != "$PGPORT" ] || [ "$(sed -n 5p "$PGDATA/postmaster.pid")" != "$PGHOST" ]; then
    die "$PGDATA/postmaster.pid (port $(sed -n 4p "$PGDATA/postmaster.pid"), socket dir $(sed -n 5p "$PGDATA/postmaster.pid")) does not match PGPORT=$PGPORT PGHOST=$PGHOST"
fi
sqladm -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
sqladm -c "CREATE DATABASE $DB" >/dev/null
sql -c "CREATE EXTENSION stream" >/dev/null
sql -c "SELECT stream.create_stream('$STREAM', $NSHARDS)" >/dev/null
: >"$WORK/expected"

# ============================ phase 1: SIGKILL ==============================
say "phase 1: kill -9 of the postmaster"
put_committed c1 200
start_inflight crash
put_committed c2 200          # committed after the in-flight transaction took its numbers
sql -c "SELECT stream.get_shard_iterator('$STREAM', 'shardId-000000000000', 'LATEST')" >"$WORK/iterator"
note_max
say "committed $(wc -l <"$WORK/expected") records; last sequence number per shard: $(tr '\n' ' ' <"$WORK/maxseq")"

PM=$(head -1 "$PGDATA/postmaster.pid")
CHILDREN=$(pgrep -P "$PM" | tr '\n' ' ' || true)
say "kill -9 postmaster $PM (children: $CHILDREN)"
kill -9 "$PM"
wait_gone 10 "$PM" >/dev/null || die "postmaster $PM did not die"
# children notice the postmaster's death and exit; a survivor would keep the old
# shared memory attached and make the restart fail
# shellcheck disable=SC2086
if survivors=$(wait_gone 30 $CHILDREN); then
    say "all children of the killed postmaster exited"
else
    fail "processes of the killed postmaster still alive after 30s (they do not exit on postmaster death):"
    # shellcheck disable=SC2086
    ps -o pid,args -p "$(echo $survivors | tr ' ' ',')" || true
    # shellcheck disable=SC2086
    kill -9 $survivors 2>/dev/null || true
fi
wait "$INFLIGHT_PID" 2>/dev/null || true
T1=$(date +%s)
bash "$ROOT/scripts/cluster.sh" start >"$WORK/cluster-start.log" 2>&1 ||
    { cat "$WORK/cluster-start.log"; die "restart after kill -9 failed"; }
say "restarted after crash in $(( $(date +%s) - T1 ))s"
grep -q 'database system was interrupted\|was not properly shut down\|redo starts\|automatic recovery' "$STREAM_PGLOG" ||
    say "(note: no crash-recovery message found in $STREAM_PGLOG)"

check_all_readable "after kill -9"
check_new_greater "after kill -9" n1
read_old_iterator "after kill -9"
check_all_readable "after kill -9 + new puts"

# ============================ phase 2: fast restart =========================
say "phase 2: pg_ctl restart -m fast"
put_committed c3 100
start_inflight fast
note_max
as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w -t 120 -s -l "$STREAM_PGLOG" restart >/dev/null ||
    die "pg_ctl restart -m fast failed"
wait "$INFLIGHT_PID" 2>/dev/null || true
for _ in $(seq 1 120); do server_up && break; sleep 0.5; done
server_up || die "server not accepting connections after pg_ctl restart"
say "restarted (fast)"
check_all_readable "after fast restart"
check_new_greater "after fast restart" n2
check_all_readable "after fast restart + new puts"

# ============================ phase 3: immediate stop =======================
say "phase 3: pg_ctl stop -m immediate + start"
put_committed c4 100
start_inflight immediate
note_max
as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m immediate -w -t 60 -s stop >/dev/null || die "pg_ctl stop -m immediate failed"
wait "$INFLIGHT_PID" 2>/dev/null || true
bash "$ROOT/scripts/cluster.sh" start >"$WORK/cluster-start.log" 2>&1 ||
    { cat "$WORK/cluster-start.log"; die "start after immediate stop failed"; }
say "restarted after immediate stop"
check_all_readable "after immediate stop"
check_new_greater "after immediate stop" n3
check_all_readable "after immediate stop + new puts"

# ============================ phase 4: backend SIGKILL ======================
say "phase 4: kill -9 of a backend (postmaster reinitializes shared memory)"
put_committed c5 100
start_inflight backend
put_committed c6 40
note_max
BPID=$(head -1 "$WORK/inflight-backend.pid" | tr -d ' ')
[ -n "$BPID" ] || die "no backend pid recorded for the in-flight transaction"
PM=$(head -1 "$PGDATA/postmaster.pid")
say "kill -9 backend $BPID (postmaster $PM stays up)"
kill -9 "$BPID"
wait "$INFLIGHT_PID" 2>/dev/null || true
sleep 1
for _ in $(seq 1 120); do server_up && break; sleep 0.5; done
server_up || die "server did not come back after a backend was killed"
[ "$(head -1 "$PGDATA/postmaster.pid")" = "$PM" ] || say "(note: postmaster pid changed)"
say "server back after the backend crash"
check_all_readable "after backend kill -9"
check_new_greater "after backend kill -9" n4
check_all_readable "after backend kill -9 + new puts"
