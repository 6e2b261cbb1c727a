#!/usr/bin/env bash
# bench/profile.sh: CPU profile (perf, cpu-clock sampling, all CPUs) of the server backends
# while one of the benchmark workloads runs. Needs the database that bench/run.sh leaves when
# run with BENCH_KEEP_RUNNING=1 (with phase 3 for the read workloads), on the same cluster.
#
#   BENCH_KEEP_RUNNING=1 bench/run.sh        # once
#   bench/profile.sh put_records [SECONDS]   # then any of:
#       put_records put_record get_records read_shard plain_put plain_single plain_read pgq
#
# Writes bench/results/profile_<workload>.txt (flat profile by DSO and symbol of the pgbench
# backends and the WAL writer, then callers of the top symbols when call graphs are usable) and prints its head.
# Environment: BENCH_CLUSTER, BENCH_ROOT, BENCH_PORT, BENCH_CLIENTS as for run.sh;
# PROFILE_CALLGRAPH [fp] fp | dwarf | none.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
BENCH_CLUSTER=${BENCH_CLUSTER:-own}
BENCH_ROOT=${BENCH_ROOT:-/tmp/stream_bench}
BENCH_PORT=${BENCH_PORT:-5495}
BENCH_CLIENTS=${BENCH_CLIENTS:-2}
BENCH_SHARDS=${BENCH_SHARDS:-4}
PROFILE_CALLGRAPH=${PROFILE_CALLGRAPH:-fp}
W=${1:?usage: bench/profile.sh WORKLOAD [SECONDS]}
SECS=${2:-15}
DB=stream_bench
if [ "$BENCH_CLUSTER" = own ]; then
    export PGHOST=$BENCH_ROOT/sock PGPORT=$BENCH_PORT PGUSER=postgres
fi
command -v perf >/dev/null || { echo "perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
OUT=$BENCH_DIR/results
mkdir -p "$OUT"
q() { "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -d "$DB" "$@"; }

args=()
case $W in
    put_records|put_record)
        name="prof_$$"
        q -c "SELECT stream.create_stream('$name', $BENCH_SHARDS)" >/dev/null
        trap 'q -c "SELECT stream.delete_stream('"'$name'"')" >/dev/null 2>&1 || true' EXIT
        script=${W}_stream.sql; args=(-D stream="$name") ;;
    get_records) script=get_records_stream.sql; args=(-D stream=readbench) ;;
    read_shard)  script=read_shard_stream.sql; args=(-D stream=readbench) ;;
    plain_put)    script=put_records_plain.sql ;;
    plain_single) script=put_record_plain.sql ;;
    plain_read)   script=get_records_plain.sql; export PGOPTIONS="-c enable_sort=off" ;;
    pgq)
        name="prof_$$"
        q -c "SELECT pgq.create_queue('$name')" >/dev/null
        trap 'q -c "SELECT pgq.drop_queue('"'$name'"', true)" >/dev/null 2>&1 || true' EXIT
        script=put_records_pgq.sql; args=(-D queue="$name") ;;
    *) echo "unknown workload $W" >&2; exit 2 ;;
esac

q -c CHECKPOINT
data=$OUT/perf_$W.data
rm -f "$data" "$data.old"
cg=()
case $PROFILE_CALLGRAPH in
    fp) cg=(-g) ;;
    dwarf) cg=(--call-graph=dwarf,16384) ;;
esac
"$PGBIN/pgbench" -n -M prepared -c "$BENCH_CLIENTS" -j "$BENCH_CLIENTS" -T $((SECS + 2)) \
    -D nbatches=64 -D nsingle=20000 -D nstarts=2000 -f "$BENCH_DIR/pgbench/$script" "${args[@]}" "$DB" \
    >"$OUT/profile_$W.pgbench.log" 2>&1 &
pgb=$!
sleep 1
# this cluster's pgbench backends and WAL writer only (other clusters may run on the machine)
pids=$(q -c "SELECT string_agg(pid::text, ',') FROM pg_stat_activity
             WHERE (datname = '$DB' AND application_name = 'pgbench') OR backend_type = 'walwriter'")
[ -n "$pids" ] || { echo "no pgbench backends found" >&2; exit 1; }
perf record -e cpu-clock -F 1999 -p "$pids" "${cg[@]}" -o "$data" -- sleep "$SECS" >/dev/null 2>&1
wait "$pgb" || { tail "$OUT/profile_$W.pgbench.log" >&2; exit 1; }
{
    echo "# $W: $(grep '^tps' "$OUT/profile_$W.pgbench.log")"
    echo "## flat profile, postgres processes"
    perf report -i "$data" --comm postgres --no-children --sort dso,symbol --stdio -g none 2>/dev/null |
        grep -v '^#' | sed '/^$/d' | head -60 || true
    if [ "$PROFILE_CALLGRAPH" != none ]; then
        echo
        echo "## call graph (callers), postgres processes"
        perf report -i "$data" --comm postgres --no-children --sort symbol --stdio -g caller,0.5,callee,function,percent \
            --percent-limit 2 2>/dev/null | grep -v '^#' | sed '/^$/d' | head -400 || true
    fi
} >"$OUT/profile_$W.txt"
head -50 "$OUT/profile_$W.txt" || true
echo "... full profile in $OUT/profile_$W.txt (perf data: $data)"
