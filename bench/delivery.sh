#!/usr/bin/env bash
# End-to-end throughput of delivery streams fed by a stream.
#
#   bench/delivery.sh        (against the cluster of scripts/env.sh; restart it after make install)
#   STREAM_PGPORT=5482 STREAM_PGDATA=/tmp/dl/data STREAM_PGSOCK=/tmp/dl/sock bench/delivery.sh
#
# A stream of BENCH_SHARDS shards is loaded with BENCH_DELIVERY_RECORDS JSON records
# (about 120 bytes each: an id, a text, a number, a timestamp, a boolean) before any
# delivery stream exists.  Then, one at a time, a delivery stream is created on it
# (starting_position TRIM_HORIZON, buffer_interval_seconds 0, buffer_size_mb
# BENCH_BUFFER_MB) and the time until its progress row counts every record delivered is
# measured: the background worker reads the records with the storage API, converts
# them and writes fsynced files (or inserts rows) in batches, with the exactly-once
# bookkeeping of every batch.  Variants: JSON lines as is, JSON lines gzip, CSV with a
# schema, Parquet (snappy, zstd) with a schema, and a table destination.  Results go to
# bench/results/delivery.md.  A benchmark, not a test: it fails only on errors.
set -euo pipefail
export LC_ALL=C

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd "$HERE/.." && pwd -P)"
# shellcheck source=scripts/env.sh
source "$ROOT/scripts/env.sh"

N="${BENCH_DELIVERY_RECORDS:-1000000}"
SHARDS="${BENCH_SHARDS:-4}"
BUFFER_MB="${BENCH_BUFFER_MB:-64}"
DB=stream_bench_delivery
OUT="$ROOT/bench/results/delivery.md"
WORK="$(mktemp -d /tmp/stream_bench_delivery.XXXXXX)"
chmod 755 "$WORK"
[ "$(id -u)" = 0 ] && chown postgres "$WORK"
mkdir -p "$ROOT/bench/results"

psql_db() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
say() { printf '[delivery bench] %s\n' "$*" >&2; }
cleanup() {
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
psql_db -c "CREATE EXTENSION stream" \
        -c "CREATE TABLE public.bench_row (id bigint, name text, amount numeric(12,2), ts timestamptz, flag boolean)" \
        -c "CREATE TABLE public.bench_sink (id bigint, name text, amount numeric(12,2), ts timestamptz, flag boolean)" \
        -c "SELECT stream.create_stream('bsrc', $SHARDS)"

say "loading $N records into stream bsrc ($SHARDS shards)"
t0=$(date +%s.%N)
psql_db -c "SELECT count(*) FROM generate_series(0, ($N - 1) / 500) b,
    LATERAL stream.put_records('bsrc',
        ARRAY(SELECT 'k' || g FROM generate_series(b * 500, least(b * 500 + 499, $N - 1)) g),
        ARRAY(SELECT convert_to(json_build_object('id', g, 'name', 'name-' || g || '-' || md5(g::text),
                                                  'amount', round((g % 100000) / 7.0, 2),
                                                  'ts', '2024-01-01T00:00:00Z'::timestamptz + g * interval '1 second',
                                                  'flag', g % 3 = 0)::text, 'UTF8')
                FROM generate_series(b * 500, least(b * 500 + 499, $N - 1)) g))" >/dev/null
t1=$(date +%s.%N)
SID=$(psql_db -c "SELECT stream_id FROM stream.streams WHERE stream_name = 'bsrc'")
BYTES=$(psql_db -c "SELECT sum(octet_length(data)) FROM stream_data.s$SID")
say "loaded $BYTES bytes in $(echo "$t1 - $t0" | bc) s"

results=()
run_variant() {   # $1 label, $2 extra create_delivery_stream arguments
    local label=$1 args=$2 name start end secs rps mbs files out_bytes
    name="b_$(echo "$label" | tr -c 'a-z0-9' '_' | sed 's/_*$//')"
    psql_db -c "CHECKPOINT" >/dev/null
    start=$(date +%s.%N)
    psql_db -c "SELECT stream.create_delivery_stream('$name', source_stream_name => 'bsrc', buffer_size_mb => $BUFFER_MB,
                 buffer_interval_seconds => 0, starting_position => 'TRIM_HORIZON', $args)" >/dev/null
    while :; do
        local done_n
        done_n=$(psql_db -c "SELECT p.records_delivered + p.records_failed FROM stream.delivery_progress p
                             JOIN stream.delivery_streams d USING (delivery_stream_id) WHERE d.delivery_stream_name = '$name'")
        [ "$done_n" -ge "$N" ] && break
        if [ "$(echo "$(date +%s.%N) - $start > 900" | bc)" = 1 ]; then say "$label: timed out"; return 1; fi
        sleep 0.05
    done
    end=$(date +%s.%N)
    secs=$(echo "$end - $start" | bc -l)
    rps=$(printf '%.0f' "$(echo "$N / $secs" | bc -l)")
    mbs=$(printf '%.1f' "$(echo "$BYTES / $secs / 1048576" | bc -l)")
    read -r files out_bytes < <(psql_db -F ' ' -c "SELECT p.files_delivered, p.bytes_delivered FROM stream.delivery_progress p
                 JOIN stream.delivery_streams d USING (delivery_stream_id) WHERE d.delivery_stream_name = '$name'")
    say "$label: $N records in $(printf '%.2f' "$secs") s = $rps records/s, $mbs MB/s of input; $files files, $out_bytes bytes"
    results+=("| $label | $(printf '%.2f' "$secs") | $rps | $mbs | $files | $out_bytes |")
    psql_db -c "SELECT stream.delete_delivery_stream('$name')" >/dev/null
}

run_variant "json lines (as is)" "destination => '$WORK/json'"
run_variant "json lines, gzip" "destination => '$WORK/jsongz', compression => 'gzip'"
run_variant "csv with schema" "destination => '$WORK/csv', format => 'csv', schema => 'public.bench_row'"
run_variant "parquet snappy" "destination => '$WORK/pq', format => 'parquet', schema => 'public.bench_row', compression => 'snappy'"
run_variant "parquet zstd" "destination => '$WORK/pqz', format => 'parquet', schema => 'public.bench_row', compression => 'zstd'"
run_variant "table destination" "destination_table => 'public.bench_sink'"

{
    echo "# Delivery stream throughput"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores; bench/delivery.sh with BENCH_DELIVERY_RECORDS=$N, BENCH_SHARDS=$SHARDS, BENCH_BUFFER_MB=$BUFFER_MB."
    echo "Input: $N JSON records already in a stream of $SHARDS shards, $BYTES bytes of record data"
    echo "(about $((BYTES / N)) bytes each). Time from create_delivery_stream (TRIM_HORIZON, interval 0) until the"
    echo "progress row counts every record delivered: reading, conversion, fsynced files renamed into place,"
    echo "manifest and checkpoints committed per batch. MB/s is of input record data."
    echo
    echo "| variant | seconds | records/s | MB/s | files | bytes written |"
    echo "|---|---:|---:|---:|---:|---:|"
    printf '%s\n' "${results[@]}"
} >"$OUT"
cat "$OUT"
