#!/usr/bin/env bash
# bench/run.sh: side-by-side throughput benchmark of the stream extension against plain
# PostgreSQL tables and PgQ, in one run on one cluster. Not a test; not run by CI.
#
#   bench/run.sh                      # full run (about 15 minutes with the defaults)
#   BENCH_SECONDS=5 BENCH_RETAINED=500000 bench/run.sh     # quick run
#
# Prints a Markdown table of absolute numbers and ratios and writes it to bench/results/latest.md
# (pgbench logs of the run go to bench/results/logs/). See bench/README.md for the workloads.
#
# Environment (defaults in brackets):
#   BENCH_SECONDS [20]        duration of every measured pgbench run
#   BENCH_ROUNDS [3]          rounds per phase; variant order is reversed every other round;
#                             the table reports the best round (all rounds are listed)
#   BENCH_CLIENTS [2]         pgbench clients (= threads)
#   BENCH_SHARDS [4]          shards per stream
#   BENCH_RETAINED [10000000] records loaded into the stream before phase 4
#   BENCH_READ_RECORDS [1000000] records in the read stream / plain read table (phase 3)
#   BENCH_PHASES [1,2,3,4,5,6] which phases to run
#   BENCH_CLUSTER [own]       own: a private cluster of the benchmark (initdb'd if missing, restarted
#                             so that a freshly installed build is loaded, stopped at the end);
#                             env: use the server that PGHOST/PGPORT/PGUSER point at (e.g. after
#                             `. scripts/env.sh`), its settings unchanged
#   BENCH_ROOT [/tmp/stream_bench]  own cluster: data directory $BENCH_ROOT/data, socket $BENCH_ROOT/sock
#   BENCH_PORT [5495]         own cluster: port
#   BENCH_SHARED_BUFFERS      own cluster: shared_buffers [min(4GB, RAM/4)]
#   BENCH_KEEP_RUNNING [0]    own cluster: 1 = leave it running at the end
#   BENCH_STREAM [auto]       auto: benchmark the extension if it is installed; 0: baselines only
#   PGBIN [/usr/lib/postgresql/15/bin]
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR")
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
BENCH_SECONDS=${BENCH_SECONDS:-20}
BENCH_ROUNDS=${BENCH_ROUNDS:-3}
BENCH_CLIENTS=${BENCH_CLIENTS:-2}
BENCH_SHARDS=${BENCH_SHARDS:-4}
BENCH_RETAINED=${BENCH_RETAINED:-10000000}
BENCH_READ_RECORDS=${BENCH_READ_RECORDS:-1000000}
BENCH_PHASES=${BENCH_PHASES:-1,2,3,4,5,6}
BENCH_CLUSTER=${BENCH_CLUSTER:-own}
BENCH_ROOT=${BENCH_ROOT:-/tmp/stream_bench}
BENCH_PORT=${BENCH_PORT:-5495}
BENCH_KEEP_RUNNING=${BENCH_KEEP_RUNNING:-0}
BENCH_STREAM=${BENCH_STREAM:-auto}
BENCH_DB=stream_bench
NBATCHES=64          # distinct precomputed batches of 500 records
NSINGLE=20000        # distinct precomputed single records
NSTARTS=2000         # random read start positions
BATCH=500
READ_LIMIT=10000

RESULTS_DIR=$BENCH_DIR/results
LOGDIR=$RESULTS_DIR/logs
mkdir -p "$RESULTS_DIR"
rm -rf "$LOGDIR"
mkdir -p "$LOGDIR"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
has_phase() { [[ ",$BENCH_PHASES," == *",$1,"* ]]; }

BINPSQL=$PGBIN/psql
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# ---------------------------------------------------------------- prerequisites
[ -x "$PGBIN/pgbench" ] || die "pgbench not found in $PGBIN"
SHAREDIR=$("$PGBIN/pg_config" --sharedir)
if [ ! -f "$SHAREDIR/extension/pgq.control" ]; then
    log "installing postgresql-15-pgq3"
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y postgresql-15-pgq3 >"$LOGDIR/apt.log" 2>&1 ||
            { apt-get update >>"$LOGDIR/apt.log" 2>&1 && apt-get install -y postgresql-15-pgq3 >>"$LOGDIR/apt.log" 2>&1; } ||
            die "apt-get install postgresql-15-pgq3 failed (see $LOGDIR/apt.log)"
    else
        die "PgQ is not installed: apt-get install postgresql-15-pgq3 (as root)"
    fi
fi
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
PKGLIBDIR=$("$PGBIN/pg_config" --pkglibdir)
so_id() { [ -f "$PKGLIBDIR/stream.so" ] && echo "$(md5sum <"$PKGLIBDIR/stream.so" | cut -c1-12), built $(date -r "$PKGLIBDIR/stream.so" '+%Y-%m-%d %H:%M:%S')" || echo none; }
SO_START=$(so_id)
HAVE_STREAM=0
if [ "$BENCH_STREAM" != 0 ] && [ -f "$SHAREDIR/extension/stream.control" ]; then
    HAVE_STREAM=1
elif [ "$BENCH_STREAM" != 0 ]; then
    log "WARNING: extension stream is not installed ($SHAREDIR/extension/stream.control); running the baselines only"
fi

# ---------------------------------------------------------------- cluster
pg_stop() {
    as_pg "$PGBIN/pg_ctl" -D "$BENCH_ROOT/data" -m fast -w -t 60 stop >/dev/null 2>&1 ||
        as_pg "$PGBIN/pg_ctl" -D "$BENCH_ROOT/data" -m immediate -w -t 60 stop >/dev/null 2>&1 || true
}
stop_cluster() {
    if [ "$BENCH_CLUSTER" = own ] && [ "$BENCH_KEEP_RUNNING" != 1 ] && [ -f "$BENCH_ROOT/data/postmaster.pid" ]; then
        log "dropping $BENCH_DB and stopping the benchmark cluster"
        "$BINPSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" >/dev/null 2>&1 || true
        pg_stop
    fi
}

if [ "$BENCH_CLUSTER" = own ]; then
    PGDATA_B=$BENCH_ROOT/data
    SOCK=$BENCH_ROOT/sock
    mkdir -p "$BENCH_ROOT" "$SOCK"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$BENCH_ROOT" "$SOCK"
    if [ ! -f "$PGDATA_B/PG_VERSION" ]; then
        log "initdb $PGDATA_B"
        as_pg "$PGBIN/initdb" -D "$PGDATA_B" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$LOGDIR/initdb.log" 2>&1 ||
            die "initdb failed (see $LOGDIR/initdb.log)"
        echo "include_if_exists = 'bench.conf'" | as_pg tee -a "$PGDATA_B/postgresql.conf" >/dev/null
    fi
    if [ -z "${BENCH_SHARED_BUFFERS:-}" ]; then
        mem_mb=$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo)
        sb=$((mem_mb / 4)); [ "$sb" -gt 4096 ] && sb=4096
        BENCH_SHARED_BUFFERS="${sb}MB"
    fi
    preload=""
    [ "$HAVE_STREAM" = 1 ] && preload="stream"
    write_conf() { # write_conf PRELOAD
        as_pg tee "$PGDATA_B/bench.conf" >/dev/null <<EOF
# written by bench/run.sh on every run
port = $BENCH_PORT
listen_addresses = ''
unix_socket_directories = '$SOCK'
max_connections = 50
shared_preload_libraries = '$1'
shared_buffers = $BENCH_SHARED_BUFFERS
wal_buffers = 64MB
max_wal_size = 16GB
min_wal_size = 1GB
checkpoint_timeout = 30min
checkpoint_completion_target = 0.9
autovacuum = off
jit = off
synchronous_commit = on
max_prepared_transactions = 10
log_min_messages = warning
log_checkpoints = on
EOF
    }
    pg_start() {
        as_pg "$PGBIN/pg_ctl" -D "$PGDATA_B" -l "$BENCH_ROOT/postgres.log" -w -t 120 start >/dev/null ||
            { tail -20 "$BENCH_ROOT/postgres.log" >&2; die "cluster did not start (log: $BENCH_ROOT/postgres.log)"; }
    }
    if [ -f "$PGDATA_B/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$PGDATA_B" status >/dev/null 2>&1; then
        log "stopping the running benchmark cluster (port $BENCH_PORT) to load the current build"
        pg_stop
    fi
    export PGHOST=$SOCK PGPORT=$BENCH_PORT PGUSER=postgres
    trap stop_cluster EXIT
    # The previous run's database was made by an older build: drop it before the library (and its
    # maintenance worker) is loaded, so a build that cannot cope with it does not matter.
    write_conf ""
    pg_start
    "$BINPSQL" -X -q -v ON_ERROR_STOP=1 -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)"
    if [ -n "$preload" ]; then
        pg_stop
        write_conf "$preload"
        log "starting the benchmark cluster (port $BENCH_PORT, data $PGDATA_B, shared_preload_libraries = '$preload')"
        pg_start
    fi
else
    : "${PGHOST:?BENCH_CLUSTER=env needs PGHOST (e.g. . scripts/env.sh)}"
    export PGUSER=${PGUSER:-postgres}
fi
unset PGDATABASE PGOPTIONS
if [ "$BENCH_CLUSTER" = own ]; then
    POSTMASTER_PID=$(head -1 "$PGDATA_B/postmaster.pid")
else
    dd=$("$PGBIN/psql" -X -At -d postgres -c "SHOW data_directory" 2>/dev/null || true)
    [ -n "$dd" ] && [ -r "$dd/postmaster.pid" ] && POSTMASTER_PID=$(head -1 "$dd/postmaster.pid")
fi
[ -n "$POSTMASTER_PID" ] || log "WARNING: postmaster pid unknown: no server CPU figures"

PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1)
q()  { "${PSQL[@]}" -d "$BENCH_DB" "$@"; }
qv() { "${PSQL[@]}" -At -d "$BENCH_DB" -c "$1"; }
checkpoint() { q -c CHECKPOINT; }

log "recreating database $BENCH_DB"
"${PSQL[@]}" -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" -c "CREATE DATABASE $BENCH_DB"
stream_unusable() { # stream_unusable REASON: fatal with BENCH_STREAM=1, else baselines only
    [ "$BENCH_STREAM" = 1 ] && die "$1"
    log "WARNING: $1; running the baselines only"
    HAVE_STREAM=0
}
if [ "$HAVE_STREAM" = 1 ]; then
    if ! q -c "SET client_min_messages = warning" -c "CREATE EXTENSION stream CASCADE" 2>"$LOGDIR/create_extension.log"; then
        cat "$LOGDIR/create_extension.log" >&2
        stream_unusable "CREATE EXTENSION stream failed (is shared_preload_libraries = 'stream' in effect?)"
    else
        missing=$(qv "SELECT string_agg(f, ', ') FROM unnest(ARRAY['create_stream','delete_stream','list_shards',
                    'put_record','put_records','get_shard_iterator','get_records','read_shard']) f
                  WHERE NOT EXISTS (SELECT FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                                    WHERE n.nspname = 'stream' AND p.proname = f)")
        [ -z "$missing" ] || stream_unusable "the installed extension stream lacks $missing (a stub?)"
    fi
fi
log "generating payloads"
q -v nbatches=$NBATCHES -v nsingle=$NSINGLE -f "$BENCH_DIR/sql/setup.sql"

# ---------------------------------------------------------------- measurement helpers
declare -A RUNS LAT CPU
NAME_SEQ=0
next_name() { NAME_SEQ=$((NAME_SEQ + 1)); echo "${1}_$NAME_SEQ"; }

# pgbench_run LOGNAME SCRIPT [pgbench args...]: runs pgbench, checks for errors, sets TPS and LATMS.
pgbench_run() {
    local name=$1 script=$2; shift 2
    local out=$LOGDIR/$name.log
    if ! "$PGBIN/pgbench" -n -M prepared -c "$BENCH_CLIENTS" -j "$BENCH_CLIENTS" \
        -D nbatches=$NBATCHES -D nsingle=$NSINGLE -D nstarts=$NSTARTS \
        -f "$BENCH_DIR/pgbench/$script" "$@" "$BENCH_DB" >"$out" 2>&1; then
        tail -15 "$out" >&2
        die "pgbench $script failed (log: $out)"
    fi
    if grep -q 'aborted' "$out"; then
        tail -15 "$out" >&2
        die "pgbench $script: a client aborted (log: $out)"
    fi
    TPS=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out" | tail -1)
    LATMS=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$out" | tail -1)
    [ -n "$TPS" ] || die "no tps in $out"
}

# Server CPU: ticks used by the postmaster, its live children and its reaped children (a backend
# that exits is added to the postmaster's cutime/cstime), so the difference over a run is the CPU the
# whole server spent on it, whatever else the machine runs. Empty when the postmaster is unknown.
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
server_cpu_ticks() {
    [ -n "$POSTMASTER_PID" ] && [ -r "/proc/$POSTMASTER_PID/stat" ] || { echo ""; return; }
    local s total=0 pid
    s=$(<"/proc/$POSTMASTER_PID/stat"); s=${s##*) }
    total=$(awk '{ print $12 + $13 + $14 + $15 }' <<<"$s")
    for pid in $(pgrep -P "$POSTMASTER_PID"); do
        s=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        s=${s##*) }
        total=$((total + $(awk '{ print $12 + $13 + $14 + $15 }' <<<"$s")))
    done
    echo "$total"
}

# measure KEY RECORDS_PER_TXN SCRIPT [pgbench args...]: one measured run of BENCH_SECONDS;
# records/s from pgbench, server CPU microseconds per record from server_cpu_ticks.
measure() {
    local key=$1 per=$2 script=$3; shift 3
    local c0 c1 rps txns us=""
    checkpoint
    c0=$(server_cpu_ticks)
    pgbench_run "${key}_r$ROUND" "$script" -T "$BENCH_SECONDS" "$@"
    sleep 0.3   # let the postmaster reap the backends
    c1=$(server_cpu_ticks)
    rps=$(awk -v t="$TPS" -v n="$per" 'BEGIN { printf "%.0f", t * n }')
    txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$LOGDIR/${key}_r$ROUND.log")
    if [ -n "$c0" ] && [ -n "$c1" ] && [ -n "$txns" ] && [ "$txns" -gt 0 ]; then
        us=$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$txns" -v p="$per" 'BEGIN { printf "%.2f", d * 1e6 / hz / (n * p) }')
    fi
    RUNS[$key]="${RUNS[$key]:-} $rps"
    LAT[$key]="${LAT[$key]:-} $LATMS"
    CPU[$key]="${CPU[$key]:-} ${us:-0}"
    log "  $key: $rps records/s (latency $LATMS ms, server CPU ${us:-?} us/record)"
}

# rounds VARIANT...: runs run_<variant> for each round, order reversed every other round.
rounds() {
    local vs=("$@") v i
    for ((ROUND = 1; ROUND <= BENCH_ROUNDS; ROUND++)); do
        if ((ROUND % 2 == 0)); then
            for ((i = ${#vs[@]} - 1; i >= 0; i--)); do "run_${vs[i]}"; done
        else
            for v in "${vs[@]}"; do "run_$v"; done
        fi
    done
}

best() { # best (max) of the runs of KEY
    [ -n "${RUNS[$1]:-}" ] || { echo ""; return; }
    tr ' ' '\n' <<<"${RUNS[$1]}" | awk 'NF { if ($1 > m) m = $1 } END { printf "%.0f", m }'
}

new_stream() { # new_stream NAME [SHARDS]: creates a stream of SHARDS (default BENCH_SHARDS) shards
    q -c "SELECT stream.create_stream('$1', ${2:-$BENCH_SHARDS})" >/dev/null
}
drop_stream() { [ -n "${1:-}" ] && q -c "SELECT stream.delete_stream('$1')" >/dev/null || true; }

load_stream() { # load_stream NAME RECORDS: put_records batches of 500 with BENCH_CLIENTS clients
    local per_client=$(( ($2 + BATCH * BENCH_CLIENTS - 1) / (BATCH * BENCH_CLIENTS) ))
    pgbench_run "load_$1" put_records_stream.sql -t "$per_client" -D stream="$1"
}

# ---------------------------------------------------------------- phase 1: put_records vs INSERT vs PgQ
PUT_STREAM="" PGQ_QUEUE=""
run_p1_stream() {
    drop_stream "$PUT_STREAM"; PUT_STREAM=$(next_name put); new_stream "$PUT_STREAM"
    measure p1_stream $BATCH put_records_stream.sql -D stream="$PUT_STREAM"
}
run_p1_plain() {
    q -c "TRUNCATE plain_batch"
    measure p1_plain $BATCH put_records_plain.sql
}
run_p1_pgq() {
    [ -n "$PGQ_QUEUE" ] && q -c "SELECT pgq.drop_queue('$PGQ_QUEUE', true)" >/dev/null
    PGQ_QUEUE=$(next_name q); q -c "SELECT pgq.create_queue('$PGQ_QUEUE')" >/dev/null
    measure p1_pgq $BATCH put_records_pgq.sql -D queue="$PGQ_QUEUE"
}
if has_phase 1; then
    log "phase 1: put_records of $BATCH records vs multi-row INSERT vs PgQ ($BENCH_CLIENTS clients, ${BENCH_SECONDS}s runs)"
    v=(p1_plain p1_pgq); [ "$HAVE_STREAM" = 1 ] && v=(p1_stream "${v[@]}")
    rounds "${v[@]}"
    drop_stream "$PUT_STREAM"; PUT_STREAM=""
    [ -n "$PGQ_QUEUE" ] && q -c "SELECT pgq.drop_queue('$PGQ_QUEUE', true)" >/dev/null; PGQ_QUEUE=""
    q -c "TRUNCATE plain_batch"
fi

# ---------------------------------------------------------------- phase 2: put_record vs single-row INSERT
SINGLE_STREAM=""
p2_stream() {
    drop_stream "$SINGLE_STREAM"; SINGLE_STREAM=$(next_name single); new_stream "$SINGLE_STREAM"
    measure "p2_stream_$1" 1 put_record_stream.sql -D stream="$SINGLE_STREAM"
}
p2_plain() { q -c "TRUNCATE plain_single"; measure "p2_plain_$1" 1 put_record_plain.sql; }
run_p2_stream_sync()  { p2_stream sync; }
run_p2_plain_sync()   { p2_plain sync; }
run_p2_stream_async() { PGOPTIONS="-c synchronous_commit=off" p2_stream async; }
run_p2_plain_async()  { PGOPTIONS="-c synchronous_commit=off" p2_plain async; }
if has_phase 2; then
    log "phase 2: put_record vs single-row INSERT, autocommit ($BENCH_CLIENTS clients)"
    v=(p2_plain_sync p2_plain_async); [ "$HAVE_STREAM" = 1 ] && v=(p2_stream_sync p2_plain_sync p2_stream_async p2_plain_async)
    rounds "${v[@]}"
    drop_stream "$SINGLE_STREAM"; SINGLE_STREAM=""
    q -c "TRUNCATE plain_single"
fi

# ---------------------------------------------------------------- phase 3: get_records vs index range scan
run_p3_get_records() { measure p3_get_records $READ_LIMIT get_records_stream.sql -D stream=readbench; }
run_p3_read_shard()  { measure p3_read_shard $READ_LIMIT read_shard_stream.sql -D stream=readbench; }
# enable_sort=off: the generic plan of the prepared range query would otherwise be a bitmap scan +
# top-N sort (rows past the start are estimated from default selectivities); the baseline is the
# ordered index range scan (the plan is logged in results/logs/plain_read_plan.log).
PLAIN_READ_OPTS="-c enable_sort=off"
run_p3_plain()       { PGOPTIONS=$PLAIN_READ_OPTS measure p3_plain $READ_LIMIT get_records_plain.sql; }
check_reads() { # check_reads SQL: a few calls (START_ID = 1..3) must each return exactly READ_LIMIT rows
    local sql=$1 n id
    for id in 1 2 3; do
        n=$(qv "SELECT count(*) FROM (${sql//START_ID/$id}) x" | tail -1)
        [ "$n" = "$READ_LIMIT" ] || die "read check returned $n rows instead of $READ_LIMIT: ${sql//START_ID/$id}"
    done
}
READ_STREAM_READY=0
prepare_read_stream() { # the stream readbench with BENCH_READ_RECORDS records and start positions (phases 3, 6)
    [ "$READ_STREAM_READY" = 1 ] && return
    new_stream readbench
    load_stream readbench "$BENCH_READ_RECORDS"
    log "  harvesting start positions from the read stream"
    q -v nstarts=$NSTARTS -v stream=readbench -f "$BENCH_DIR/sql/read_starts_stream.sql" >"$LOGDIR/read_starts_stream.log"
    READ_STREAM_READY=1
}
if has_phase 3; then
    log "phase 3: reading $READ_LIMIT records per call ($BENCH_READ_RECORDS records loaded)"
    per_client=$(( (BENCH_READ_RECORDS + BATCH * BENCH_CLIENTS - 1) / (BATCH * BENCH_CLIENTS) ))
    q -c "TRUNCATE plain_read"
    pgbench_run load_plain_read load_plain_read.sql -t "$per_client"
    q -v nstarts=$NSTARTS -f "$BENCH_DIR/sql/read_starts_plain.sql"
    check_reads "SELECT p.* FROM read_starts_plain s, LATERAL (SELECT * FROM plain_read t WHERE t.shard = s.shard AND t.seq >= s.seq ORDER BY t.seq LIMIT $READ_LIMIT) p WHERE s.id = START_ID"
    v=(p3_plain)
    if [ "$HAVE_STREAM" = 1 ]; then
        prepare_read_stream
        v=(p3_get_records p3_read_shard p3_plain)
    fi
    q -c "VACUUM ANALYZE"
    if [ "$HAVE_STREAM" = 1 ]; then
        check_reads "SELECT r.* FROM read_starts_stream s, LATERAL stream.get_records(stream.get_shard_iterator('readbench', s.shard_id, 'AT_SEQUENCE_NUMBER', s.seqnum), $READ_LIMIT) g, LATERAL unnest(g.records) r WHERE s.id = START_ID"
        check_reads "SELECT r.* FROM read_starts_stream s, LATERAL stream.read_shard('readbench', s.shard_id, 'AT_SEQUENCE_NUMBER', s.seqnum, NULL, $READ_LIMIT) r WHERE s.id = START_ID"
    fi
    PGOPTIONS=$PLAIN_READ_OPTS q -c "PREPARE p(int, bigint) AS SELECT shard, seq, arrival, partition_key, data FROM plain_read WHERE shard = \$1 AND seq >= \$2 ORDER BY seq LIMIT $READ_LIMIT" \
        -c "SET plan_cache_mode = force_generic_plan" -c "EXPLAIN EXECUTE p(0, 0)" >"$LOGDIR/plain_read_plan.log"
    grep -q "Index Scan using plain_read_pkey" "$LOGDIR/plain_read_plan.log" ||
        { cat "$LOGDIR/plain_read_plan.log" >&2; die "the plain read query does not use the index range scan"; }
    log "  warm-up"
    for x in "${v[@]}"; do
        case $x in
            p3_get_records) pgbench_run warm_get_records get_records_stream.sql -T 3 -D stream=readbench ;;
            p3_read_shard) pgbench_run warm_read_shard read_shard_stream.sql -T 3 -D stream=readbench ;;
            p3_plain) PGOPTIONS=$PLAIN_READ_OPTS pgbench_run warm_plain get_records_plain.sql -T 3 ;;
        esac
    done
    rounds "${v[@]}"
fi

# ---------------------------------------------------------------- phase 4: put_records with retained records
EMPTY_STREAM=""
run_p4_retained() { measure p4_retained $BATCH put_records_stream.sql -D stream=retained; }
run_p4_empty() {
    drop_stream "$EMPTY_STREAM"; EMPTY_STREAM=$(next_name empty); new_stream "$EMPTY_STREAM"
    measure p4_empty $BATCH put_records_stream.sql -D stream="$EMPTY_STREAM"
}
LOAD_INFO=""
if has_phase 4 && [ "$HAVE_STREAM" = 1 ]; then
    log "phase 4: put_records into a stream retaining $BENCH_RETAINED records vs an empty stream"
    new_stream retained
    checkpoint
    t0=$(date +%s.%N)
    load_stream retained "$BENCH_RETAINED"
    t1=$(date +%s.%N)
    LOAD_INFO=$(awk -v a="$t0" -v b="$t1" -v n="$BENCH_RETAINED" 'BEGIN { printf "loaded %d records in %.0f s (%.0f records/s)", n, b - a, n / (b - a) }')
    log "  $LOAD_INFO"
    rounds p4_retained p4_empty
    drop_stream "$EMPTY_STREAM"
elif has_phase 4; then
    log "phase 4 skipped (needs the extension)"
fi

# ---------------------------------------------------------------- phase 5: put cost vs shard count
# put_records of the phase 1 batches (500 random keys) into a fresh stream of 1, 64 and 1,024 shards,
# against the same rows INSERTed into plain_batch with the shard the key routes to among as many shards
# (the view plain_route picks the precomputed shard column), all in one run.  Monitoring on, as the target
# asks: the per-minute metrics counted (the default) and every shard-level metric enabled.
P5_STREAM=""
p5_stream() { # p5_stream SHARDS
    drop_stream "$P5_STREAM"; P5_STREAM=$(next_name shards); new_stream "$P5_STREAM" "$1"
    q -c "SELECT stream.enable_enhanced_monitoring('$P5_STREAM', ARRAY['ALL'])" >/dev/null
    measure "p5_stream_$1" $BATCH put_records_stream.sql -D stream="$P5_STREAM"
}
p5_plain() { # p5_plain SHARDS
    local col=shards$1
    [ "$1" = 1 ] && col="array_fill(0, ARRAY[cardinality(pkeys)])"
    q -c "CREATE OR REPLACE VIEW plain_route AS SELECT id, $col AS shards, pkeys, datas FROM bench_batches" \
      -c "TRUNCATE plain_batch"
    measure "p5_plain_$1" $BATCH put_records_plain_routed.sql
}
run_p5_stream_1()    { p5_stream 1; }
run_p5_stream_64()   { p5_stream 64; }
run_p5_stream_1024() { p5_stream 1024; }
run_p5_plain_1()     { p5_plain 1; }
run_p5_plain_64()    { p5_plain 64; }
run_p5_plain_1024()  { p5_plain 1024; }
if has_phase 5; then
    log "phase 5: put_records and plain INSERT over 1, 64 and 1,024 shards"
    v=(p5_plain_1 p5_plain_64 p5_plain_1024)
    [ "$HAVE_STREAM" = 1 ] && v=(p5_stream_1 p5_plain_1 p5_stream_64 p5_plain_64 p5_stream_1024 p5_plain_1024)
    rounds "${v[@]}"
    drop_stream "$P5_STREAM"; P5_STREAM=""
    q -c "TRUNCATE plain_batch" -c "DROP VIEW IF EXISTS plain_route"
fi

# ---------------------------------------------------------------- phase 6: monitoring on vs off
# The cost of the metrics on the hot paths: put_records (BENCH_SHARDS shards) and read_shard of 10,000
# records with the per-shard counting on (the default) and off (stream.track_metrics = off), and
# put_records into a stream with every shard-level metric enabled (enable_enhanced_monitoring ALL: the
# worker then writes a row per shard and minute).
P6_STREAM=""
p6_put() { # p6_put KEY ENHANCED [PGOPTIONS]
    drop_stream "$P6_STREAM"; P6_STREAM=$(next_name mon); new_stream "$P6_STREAM"
    [ "$2" = 1 ] && q -c "SELECT stream.enable_enhanced_monitoring('$P6_STREAM', ARRAY['ALL'])" >/dev/null
    PGOPTIONS=${3:-} measure "$1" $BATCH put_records_stream.sql -D stream="$P6_STREAM"
}
run_p6_put_on()       { p6_put p6_put_on 0; }
run_p6_put_off()      { p6_put p6_put_off 0 "-c stream.track_metrics=off"; }
run_p6_put_enhanced() { p6_put p6_put_enhanced 1; }
run_p6_read_on()      { measure p6_read_on $READ_LIMIT read_shard_stream.sql -D stream=readbench; }
run_p6_read_off()     { PGOPTIONS="-c stream.track_metrics=off" measure p6_read_off $READ_LIMIT read_shard_stream.sql -D stream=readbench; }
if has_phase 6 && [ "$HAVE_STREAM" = 1 ]; then
    log "phase 6: metrics on vs off (put_records, read_shard)"
    prepare_read_stream
    q -c "SELECT stream.disable_enhanced_monitoring('readbench', ARRAY['ALL'])" >/dev/null
    rounds p6_put_on p6_put_off p6_put_enhanced p6_read_on p6_read_off
    drop_stream "$P6_STREAM"; P6_STREAM=""
elif has_phase 6; then
    log "phase 6 skipped (needs the extension)"
fi

# ---------------------------------------------------------------- report
group3() { sed -e ':a' -e 's/\([0-9]\)\([0-9]\{3\}\)\($\|[^0-9]\)/\1,\2\3/' -e 'ta'; }
fmt() { if [ -n "$1" ]; then group3 <<<"$1"; else echo "n/a"; fi; }
ratio() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }' || echo "n/a"; }
met() { # met RATIO TARGET (TARGET -: none)
    [ "$1" = n/a ] && { echo "n/a"; return; }
    [ "$2" = - ] && { echo "–"; return; }
    awk -v r="$1" -v t="$2" 'BEGIN { print (r >= t) ? "yes" : "**MISSED**" }'
}
runs_list() { [ -n "${RUNS[$1]:-}" ] && awk '{ for (i = 1; i <= NF; i++) printf "%s%d", (i > 1 ? ", " : ""), $i }' <<<"${RUNS[$1]}" | group3 || echo ""; }
median_cpu() { # median server CPU us/record over the rounds of KEY (runs without a figure skipped)
    [ -n "${CPU[$1]:-}" ] || { echo ""; return; }
    tr ' ' '\n' <<<"${CPU[$1]}" | awk 'NF && $1 > 0' | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
lat_of() { # latency of the best run
    [ -n "${RUNS[$1]:-}" ] || { echo ""; return; }
    paste <(tr ' ' '\n' <<<"${RUNS[$1]}" | sed '/^$/d') <(tr ' ' '\n' <<<"${LAT[$1]}" | sed '/^$/d') |
        sort -k1,1nr | head -1 | cut -f2
}

PGVER=$(qv "SHOW server_version")
EXTVER=$([ "$HAVE_STREAM" = 1 ] && qv "SELECT extversion FROM pg_extension WHERE extname = 'stream'" || echo "not benchmarked")
PGQVER=$(qv "SELECT extversion FROM pg_extension WHERE extname = 'pgq'")
GITREV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "no commit")
git -C "$REPO" diff --quiet HEAD -- src 2>/dev/null || GITREV="$GITREV (+ uncommitted changes)"
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
MEM=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
SETTINGS=$(qv "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('shared_buffers','synchronous_commit','wal_level','max_wal_size','autovacuum','fsync','full_page_writes','checkpoint_timeout','jit')")

row() { # row WORKLOAD VARIANT KEY
    local b; b=$(best "$3")
    [ -n "$b" ] || return 0
    printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "$(fmt "$b")" "$(median_cpu "$3")" "$(lat_of "$3")" "$(runs_list "$3")"
}
ratio_row() { # ratio_row COMPARISON KEY_A KEY_B TARGET: A/B throughput and CPU efficiency
    local r c ca cb
    r=$(ratio "$(best "$2")" "$(best "$3")")
    ca=$(median_cpu "$2"); cb=$(median_cpu "$3")
    c=$(ratio "$cb" "$ca")
    printf '| %s | %s | %s | %s | %s |\n' "$1" "$r" "$([ "$4" = - ] && echo – || echo "≥ $4")" "$(met "$r" "$4")" "$c"
}

REPORT=$RESULTS_DIR/latest.md
{
    echo "# stream benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'))"
    echo
    echo "- Machine: $(nproc) CPUs ($CPU), $MEM RAM, $(uname -r); load average at start $LOADAVG_START, at end $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- PostgreSQL $PGVER; stream $EXTVER (repo $GITREV, stream.so $SO_START); pgq $PGQVER"
    [ "$(so_id)" = "$SO_START" ] || echo "- **WARNING: stream.so was reinstalled during the run (now $(so_id)); numbers may mix builds**"
    echo "- Server: $SETTINGS"
    echo "- pgbench -n -M prepared -c $BENCH_CLIENTS -j $BENCH_CLIENTS -T $BENCH_SECONDS, $BENCH_ROUNDS rounds (variant order reversed every other round, CHECKPOINT before every run); $BENCH_SHARDS shards; records of 100 bytes"
    echo
    echo "| Workload | Variant | records/s (best round) | server CPU µs/record (median) | latency ms (best round) | records/s, all rounds |"
    echo "|---|---|---:|---:|---:|---|"
    row "1. batch put, 500 records/call" "stream.put_records" p1_stream
    row "1. batch put, 500 records/call" "plain multi-row INSERT" p1_plain
    row "1. batch put, 500 records/call" "PgQ insert_event ×500 in one xact" p1_pgq
    row "2. single put, autocommit, sync commit" "stream.put_record" p2_stream_sync
    row "2. single put, autocommit, sync commit" "single-row INSERT" p2_plain_sync
    row "2b. single put, synchronous_commit=off" "stream.put_record" p2_stream_async
    row "2b. single put, synchronous_commit=off" "single-row INSERT" p2_plain_async
    row "3. read 10,000 records/call" "get_shard_iterator + get_records (unnest)" p3_get_records
    row "3. read 10,000 records/call" "read_shard" p3_read_shard
    row "3. read 10,000 records/call" "plain index range scan" p3_plain
    row "4. batch put, $(fmt "$BENCH_RETAINED")+ records retained" "stream.put_records" p4_retained
    row "4. batch put, empty stream" "stream.put_records" p4_empty
    for n in 1 64 1024; do
        row "5. batch put, $(fmt $n) shards" "stream.put_records" "p5_stream_$n"
        row "5. batch put, $(fmt $n) shards" "plain INSERT (routed)" "p5_plain_$n"
    done
    row "6. batch put, metrics" "on (default)" p6_put_on
    row "6. batch put, metrics" "off (stream.track_metrics)" p6_put_off
    row "6. batch put, metrics" "enhanced monitoring ALL" p6_put_enhanced
    row "6. read_shard 10,000, metrics" "on (default)" p6_read_on
    row "6. read_shard 10,000, metrics" "off (stream.track_metrics)" p6_read_off
    echo
    echo "| Comparison | Throughput ratio | Target | Met | CPU-efficiency ratio |"
    echo "|---|---:|---:|---|---:|"
    ratio_row "put_records / plain INSERT" p1_stream p1_plain 0.85
    ratio_row "put_records / PgQ" p1_stream p1_pgq 2
    ratio_row "put_record / single-row INSERT (sync commit)" p2_stream_sync p2_plain_sync 0.9
    ratio_row "put_record / single-row INSERT (synchronous_commit=off)" p2_stream_async p2_plain_async 0.9
    ratio_row "get_records / plain SELECT" p3_get_records p3_plain 0.8
    ratio_row "read_shard / plain SELECT" p3_read_shard p3_plain 0.8
    ratio_row "put_records retained / empty" p4_retained p4_empty 0.9
    ratio_row "put_records 64 shards / 1 shard" p5_stream_64 p5_stream_1 0.9
    ratio_row "put_records 1,024 shards / 1 shard" p5_stream_1024 p5_stream_1 0.9
    ratio_row "plain INSERT 64 shards / 1 shard" p5_plain_64 p5_plain_1 -
    ratio_row "plain INSERT 1,024 shards / 1 shard" p5_plain_1024 p5_plain_1 -
    ratio_row "put_records / plain INSERT, 1 shard" p5_stream_1 p5_plain_1 0.85
    ratio_row "put_records / plain INSERT, 1,024 shards" p5_stream_1024 p5_plain_1024 0.85
    ratio_row "put_records, metrics on / off" p6_put_on p6_put_off 0.97
    ratio_row "put_records, enhanced monitoring ALL / metrics off" p6_put_enhanced p6_put_off 0.97
    ratio_row "read_shard, metrics on / off" p6_read_on p6_read_off 0.97
    echo
    echo "Throughput ratio: best round of A / best round of B (the target applies to it). CPU-efficiency ratio:"
    echo "records per server CPU-second of A / of B (medians; CPU of the postmaster and all its processes,"
    echo "from /proc), which other load on the machine disturbs much less than throughput."
    if [ "$HAVE_STREAM" != 1 ]; then
        echo
        echo "The stream extension was not installed or not usable: baselines only."
    fi
    [ -n "$LOAD_INFO" ] && { echo; echo "Phase 4 load: $LOAD_INFO (put_records, batches of $BATCH, $BENCH_CLIENTS clients)."; }
    true
} >"$REPORT"
echo
cat "$REPORT"
echo
log "report written to $REPORT (pgbench logs in $LOGDIR)"
