#!/usr/bin/env bash
# bench/callgrind.sh: instructions per call of the put and read paths, counted by valgrind's callgrind in a
# single-user postgres - repeatable to a fraction of a percent even on a loaded machine, so builds and shard
# counts can be compared where throughput cannot. Not a test; not run by CI.
#
#   bench/callgrind.sh                          # the installed build: prints a table, writes $CG_OUT
#   CG_BASELINE=base.tsv bench/callgrind.sh     # ... and each figure against a saved run of another build
#
# Workloads (each on a fresh stream or table, 200 warm-up calls, then CG_CALLS measured calls):
#   put_N      stream.put_records of 500 random keys (100-byte payloads) over N shards (N = 1, 64, 1024),
#              monitoring on: per-minute metrics counted and enhanced monitoring ALL enabled
#   putoff_N   the same with stream.track_metrics = off (nothing counted)
#   plain_N    the same rows as one INSERT ... SELECT into (shard, seq, arrival, partition_key, data) with
#              PRIMARY KEY (shard, seq), shard from the key's MD5 over N shards
#   put_one    stream.put_record of one record, 4 shards
#   read       stream.read_shard of 10,000 records (100 bytes), 4 shards, enhanced monitoring ALL
#   readoff    the same with stream.track_metrics = off
# Ratios printed: put_N / put_1 (cost of the shard count, as put_1 / put_N so 1.00 = no extra cost),
# plain_N likewise, monitoring off / on for put_4 and read, and every workload against CG_BASELINE when given.
#
# Environment (defaults in brackets):
#   PGBIN [pg_config --bindir of the PG_CONFIG in PATH, else /usr/lib/postgresql/15/bin]
#   CG_ROOT [/tmp/stream_callgrind]   scratch data directory (initdb'd once; the server must not run there)
#   CG_CALLS [40]                     measured calls per workload
#   CG_WORKLOADS [all]                 the workloads to run, space-separated
#   CG_OUT [bench/results/callgrind.tsv]
#   CG_VALGRIND_OPTS                  more valgrind options, e.g. --cache-sim=yes (then see $CG_ROOT/cg.out.2)
#   CG_BASELINE                       a CG_OUT of an earlier run (e.g. of main's build) to compare with
#   CG_REPORT_ONLY [0]                1: measure nothing, print the tables of the last run ($CG_OUT, $CG_ROOT/*.cg)
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PGBIN=${PGBIN:-$( (pg_config --bindir 2>/dev/null) || echo /usr/lib/postgresql/15/bin)}
CG_ROOT=${CG_ROOT:-/tmp/stream_callgrind}
CG_CALLS=${CG_CALLS:-40}
CG_OUT=${CG_OUT:-$BENCH_DIR/results/callgrind.tsv}
WARM=200
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

mkdir -p "$CG_ROOT" "$(dirname "$CG_OUT")"
[ "$(id -u)" = 0 ] && chown postgres "$CG_ROOT"
if [ ! -f "$CG_ROOT/data/PG_VERSION" ]; then
    as_pg "$PGBIN/initdb" -D "$CG_ROOT/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    cat <<'EOF' | as_pg tee -a "$CG_ROOT/data/postgresql.conf" >/dev/null
shared_preload_libraries = 'stream'
shared_buffers = 512MB
max_wal_size = 8GB
fsync = off
synchronous_commit = off
autovacuum = off
jit = off
EOF
fi

single() { # single DB < script: run a single-user backend
    as_pg "$PGBIN/postgres" --single -D "$CG_ROOT/data" "$1"
}

# a fresh database with the installed extension and the payloads (fixed seed: every run puts the same records)
if [ "${CG_REPORT_ONLY:-0}" != 1 ]; then
printf 'DROP DATABASE IF EXISTS cg;\nCREATE DATABASE cg;\n' | single postgres >/dev/null 2>&1
single cg >/dev/null 2>"$CG_ROOT/setup.err" <<'EOF'
CREATE EXTENSION stream;
SELECT setseed(0.42);
CREATE TABLE bench_batches (id int PRIMARY KEY, pkeys text[] NOT NULL, datas bytea[] NOT NULL);
INSERT INTO bench_batches SELECT b, array_agg(k ORDER BY i), array_agg(convert_to(t, 'UTF8') ORDER BY i) FROM (SELECT b, i, 'pk-' || (random() * 1000000)::int AS k, left(md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text), 100) AS t FROM generate_series(1, 64) b, generate_series(1, 500) i) s GROUP BY b;
SELECT stream.create_stream('read4', 4);
SELECT stream.enable_enhanced_monitoring('read4', ARRAY['ALL']);
SELECT count(*) FROM bench_batches b, LATERAL stream.put_records('read4', b.pkeys, b.datas) r;
EOF
grep -q ERROR "$CG_ROOT/setup.err" && { cat "$CG_ROOT/setup.err" >&2; exit 1; }
fi

stmt() { # stmt WORKLOAD I
    local b=$(( ($2 % 64) + 1 ))
    case $1 in
        put_one) echo "SELECT count(*) FROM stream.put_record('w', 'pk-$2', '\\x000102030405060708090a0b0c0d0e0f');" ;;
        put_*|putoff_*) echo "SELECT count(*) FROM bench_batches b, LATERAL stream.put_records('w', b.pkeys, b.datas) r WHERE b.id = $b;" ;;
        plain_*) echo "INSERT INTO w (shard, partition_key, data) SELECT (('x' || left(md5(u.k), 8))::bit(32)::bigint * ${1#plain_}) >> 32, u.k, u.d FROM bench_batches b, unnest(b.pkeys, b.datas) AS u(k, d) WHERE b.id = $b;" ;;
        read|readoff) echo "SELECT count(*) FROM stream.read_shard('read4', 'shardId-00000000000$(( $2 % 4 ))', 'TRIM_HORIZON', \"limit\" => 10000);" ;;
    esac
}

measure() { # measure WORKLOAD -> Ir per call
    local w=$1 script="$CG_ROOT/$1.sql"
    case $w in
        put_one) echo "SELECT stream.create_stream('w', 4);" ;;
        put_*) echo "SELECT stream.create_stream('w', ${w#put_}); SELECT stream.enable_enhanced_monitoring('w', ARRAY['ALL']);" ;;
        putoff_*) echo "SET stream.track_metrics = off; SELECT stream.create_stream('w', ${w#putoff_});" ;;
        readoff) echo "SET stream.track_metrics = off;" ;;
        plain_*) echo "CREATE SEQUENCE w_seq; CREATE TABLE w (shard int NOT NULL, seq bigint NOT NULL DEFAULT nextval('w_seq'), arrival timestamptz NOT NULL DEFAULT now(), partition_key text NOT NULL, data bytea NOT NULL, PRIMARY KEY (shard, seq));" ;;
        *) : ;;
    esac >"$script"
    for i in $(seq 1 $WARM); do stmt "$w" "$i"; done >>"$script"
    echo "SELECT pg_backend_pid();" >>"$script"
    for i in $(seq 1 "$CG_CALLS"); do stmt "$w" "$i"; done >>"$script"
    echo "SELECT pg_backend_pid();" >>"$script"
    case $w in
        put_*|putoff_*) echo "SELECT stream.delete_stream('w');" ;;
        plain_*) echo "DROP TABLE w; DROP SEQUENCE w_seq;" ;;
    esac >>"$script"
    rm -f "$CG_ROOT"/cg.out*
    as_pg valgrind --tool=callgrind ${CG_VALGRIND_OPTS:-} --dump-before=pg_backend_pid --callgrind-out-file="$CG_ROOT/cg.out" \
        "$PGBIN/postgres" --single -D "$CG_ROOT/data" cg <"$script" >"$CG_ROOT/$w.log" 2>&1
    if grep -q ERROR "$CG_ROOT/$w.log"; then grep ERROR "$CG_ROOT/$w.log" | head -3 >&2; exit 1; fi
    cp "$CG_ROOT/cg.out.2" "$CG_ROOT/$w.cg"
    callgrind_annotate "$CG_ROOT/cg.out.2" 2>/dev/null | awk -v m="$CG_CALLS" '/PROGRAM TOTALS/ {gsub(",", "", $1); printf "%d\n", $1 / m}'
}

WORKLOADS=${CG_WORKLOADS:-"put_1 put_64 put_1024 plain_1 plain_64 plain_1024 put_4 putoff_4 put_one read readoff"}
if [ "${CG_REPORT_ONLY:-0}" != 1 ]; then
: >"$CG_OUT"
for w in $WORKLOADS; do
    printf '%s\t%s\n' "$w" "$(measure "$w")" >>"$CG_OUT"
    echo "measured $w" >&2
done
fi

ir() { awk -v w="$1" '$1 == w {print $2}' "${2:-$CG_OUT}"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "" || b == "") printf "n/a"; else printf "%.3f", a / b}'; }
so=$("$PGBIN/pg_config" --pkglibdir)/stream.so
echo "callgrind, $(date -u '+%Y-%m-%d %H:%M UTC'), stream.so $(md5sum <"$so" | cut -c1-12), $CG_CALLS calls after $WARM"
echo
echo "| Workload | instructions per call | per record |${CG_BASELINE:+ baseline / this build |}"
echo "|---|---:|---:|${CG_BASELINE:+---:|}"
for w in $WORKLOADS; do
    n=$(ir "$w"); per=500; [ "$w" = put_one ] && per=1; case $w in read*) per=10000 ;; esac
    line="| $w | $(printf "%'d" "$n") | $(printf "%'d" $((n / per))) |"
    [ -n "${CG_BASELINE:-}" ] && line="$line $(ratio "$(ir "$w" "$CG_BASELINE")" "$n") |"
    echo "$line"
done
echo
echo "| Comparison | ratio (1.00: no extra cost) |"
echo "|---|---:|"
has() { [ -n "$(ir "$1")" ]; }
cmp_row() { has "$2" && has "$3" && echo "| $1 | $(ratio "$(ir "$2")" "$(ir "$3")") |" || true; }
for n in 64 1024; do
    cmp_row "put_records, 1 shard / $n shards" put_1 "put_$n"
    cmp_row "plain INSERT, 1 shard / $n shards" plain_1 "plain_$n"
    cmp_row "plain INSERT / put_records, $n shards" "plain_$n" "put_$n"
done
cmp_row "plain INSERT / put_records, 1 shard" plain_1 put_1
cmp_row "put_records 4 shards, monitoring off / on" putoff_4 put_4
cmp_row "read_shard 10,000, monitoring off / on" readoff read

# Where the put's instructions go, per call, by part of the path (inclusive counts of the functions named;
# "rest": the executor, the transaction, the SQL call). Only for the put_N workloads measured in this run.
part() { # part WORKLOAD FUNCTION... -> inclusive instructions per call of those functions
    local w=$1; shift
    callgrind_annotate --auto=no --inclusive=yes --threshold=100 "$CG_ROOT/$w.cg" 2>/dev/null |
        awk -v m="$CG_CALLS" -v fns="$*" 'BEGIN {n = split(fns, f, " "); for (i = 1; i <= n; i++) want[f[i]] = 1}
            /^ *[0-9,]+ / && $NF ~ /\]$/ {c = $1; gsub(",", "", c); name = $0; sub(/ \[.*$/, "", name); sub(/^.*:/, "", name)
                if (name in want && !(name in seen)) {seen[name] = 1; t += c}}
            END {printf "%d", t / m}'
}
PUTS=""
for w in $WORKLOADS; do case $w in put_[0-9]*) [ -f "$CG_ROOT/$w.cg" ] && PUTS="$PUTS $w" ;; esac; done
if [ -n "$PUTS" ]; then
    echo
    echo "Per call, by part of the put path (put_N - put_1: what the shard count adds):"
    echo
    printf '| part |'; for w in $PUTS; do printf ' %s |' "$w"; done
    for w in $PUTS; do [ "$w" != put_1 ] && printf ' %s - put_1 |' "$w"; done; echo
    printf '|---|'; for w in $PUTS; do printf -- '---:|'; done
    for w in $PUTS; do [ "$w" != put_1 ] && printf -- '---:|'; done; echo
    parts=("nbtree inserts (index_insert)|index_insert"
           "heap (heap_multi_insert)|heap_multi_insert"
           "sequence numbers (reserve, release at commit)|seqalloc_try_reserve_many seqalloc_xact_callback"
           "meters (meter_put)|meter_put"
           "routing (routing_open_shard, sort_by_shard)|routing_open_shard sort_by_shard"
           "per record: arrays, validation, MD5|put_arrays put_array_record"
           "result rows|tuplestore_putvalues shard_id_text seq_to_text")
    declare -A tot
    for w in $PUTS; do tot[$w]=0; done
    for p in "${parts[@]}" "rest|"; do
        label=${p%%|*}; fns=${p#*|}
        declare -A v
        for w in $PUTS; do
            if [ -n "$fns" ]; then v[$w]=$(part "$w" $fns); tot[$w]=$(( ${tot[$w]} + ${v[$w]} ))
            else v[$w]=$(( $(ir "$w") - ${tot[$w]} )); fi
        done
        printf '| %s |' "$label"; for w in $PUTS; do printf " %'d |" "${v[$w]}"; done
        for w in $PUTS; do [ "$w" != put_1 ] && [ -n "${v[put_1]:-}" ] && printf " %'d |" $(( ${v[$w]} - ${v[put_1]} )); done; echo
        unset v
    done
fi

