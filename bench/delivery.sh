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
# schema, Parquet (snappy, zstd) with a schema, and a table destination.
#
# Anchors, in the same run on the same records: DuckDB (threads = 1, node
# bench/delivery_duckdb.mjs) converting the records as a JSON-lines file to Parquet
# snappy / zstd and to CSV with the schema's columns; PostgreSQL's COPY of the raw JSON
# (a text table) to a file; INSERT ... SELECT jsonb_populate_record of the raw JSON and
# INSERT ... SELECT of the same rows already typed; put_records of BENCH_PUT_RECORDS
# records (500 a call) against put_delivery_record_batch of the same into a direct-put
# delivery stream.  The ratio is anchor seconds / our seconds (above 1: we are faster).
#
#   BENCH_DELIVERY_RECORDS [1000000]  records;  BENCH_SHARDS [4];  BENCH_BUFFER_MB [64]
#   BENCH_PAD [0]          bytes of an extra text field "note" (in the schema): 1 KiB, 10 KiB records
#   BENCH_EXTRA_COLS [0]   extra bigint fields c1..cK (in the schema): 45 makes 50 columns
#   BENCH_PUT_RECORDS [100000]  records of the direct-put comparison (0 skips it)
#   BENCH_VARIANTS [all]   e.g. "parquet_snappy table" (labels with _ for spaces)
# Results go to bench/results/delivery.md.  A benchmark, not a test: it fails only on errors.
set -euo pipefail
export LC_ALL=C

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd "$HERE/.." && pwd -P)"
# shellcheck source=scripts/env.sh
source "$ROOT/scripts/env.sh"

N="${BENCH_DELIVERY_RECORDS:-1000000}"
SHARDS="${BENCH_SHARDS:-4}"
BUFFER_MB="${BENCH_BUFFER_MB:-64}"
PAD="${BENCH_PAD:-0}"
EXTRA="${BENCH_EXTRA_COLS:-0}"
PUTN="${BENCH_PUT_RECORDS:-100000}"
VARIANTS="${BENCH_VARIANTS:-all}"
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
COLS_SQL="id bigint, name text, amount numeric(12,2), ts timestamptz, flag boolean"
COLS_DUCK='"id":"BIGINT","name":"VARCHAR","amount":"DECIMAL(12,2)","ts":"TIMESTAMPTZ","flag":"BOOLEAN"'
[ "$PAD" -gt 0 ] && { COLS_SQL="$COLS_SQL, note text"; COLS_DUCK="$COLS_DUCK,\"note\":\"VARCHAR\""; }
for ((c = 1; c <= EXTRA; c++)); do COLS_SQL="$COLS_SQL, c$c bigint"; COLS_DUCK="$COLS_DUCK,\"c$c\":\"BIGINT\""; done
# the record's text beyond the five base fields
TAIL_SQL="''"
[ "$PAD" -gt 0 ] && TAIL_SQL="$TAIL_SQL || ', \"note\" : \"' || repeat('x', $PAD) || '\"'"
[ "$EXTRA" -gt 0 ] && TAIL_SQL="$TAIL_SQL || (SELECT string_agg(format(', \"c%s\" : %s', c, (g * c) % 1000003), '') FROM generate_series(1, $EXTRA) c)"
psql_db -c "CREATE EXTENSION stream" \
        -c "CREATE TABLE public.bench_row ($COLS_SQL)" \
        -c "CREATE TABLE public.bench_sink ($COLS_SQL)" \
        -c "SELECT stream.create_stream('bsrc', $SHARDS)"

say "loading $N records into stream bsrc ($SHARDS shards)"
t0=$(date +%s.%N)
psql_db -c "SELECT count(*) FROM generate_series(0, ($N - 1) / 500) b,
    LATERAL stream.put_records('bsrc',
        ARRAY(SELECT 'k' || g FROM generate_series(b * 500, least(b * 500 + 499, $N - 1)) g),
        ARRAY(SELECT convert_to(rtrim(json_build_object('id', g, 'name', 'name-' || g || '-' || md5(g::text),
                                                  'amount', round((g % 100000) / 7.0, 2),
                                                  'ts', '2024-01-01T00:00:00Z'::timestamptz + g * interval '1 second',
                                                  'flag', g % 3 = 0)::text, '}') || $TAIL_SQL || '}', 'UTF8')
                FROM generate_series(b * 500, least(b * 500 + 499, $N - 1)) g))" >/dev/null
t1=$(date +%s.%N)
SID=$(psql_db -c "SELECT stream_id FROM stream.streams WHERE stream_name = 'bsrc'")
BYTES=$(psql_db -c "SELECT sum(octet_length(data)) FROM stream_data.s$SID")
say "loaded $BYTES bytes in $(echo "$t1 - $t0" | bc) s"

results=()
declare -A SECS
timed() {   # $1 key, $2 SQL: SECS[key] = its seconds
    local t0 t1
    psql_db -c "CHECKPOINT" >/dev/null
    t0=$(date +%s.%N)
    psql_db -c "$2" >/dev/null
    t1=$(date +%s.%N)
    SECS[$1]=$(echo "$t1 - $t0" | bc -l)
    say "$1: $(printf '%.2f' "${SECS[$1]}") s"
}
wanted() { [ "$VARIANTS" = all ] || [[ " $VARIANTS " == *" $1 "* ]]; }

say "anchors: COPY, jsonb_populate_record, typed INSERT, DuckDB"
psql_db -c "CREATE TABLE raw AS SELECT convert_from(data, 'UTF8') AS data FROM stream_data.s$SID" \
        -c "CREATE TABLE sink_a (LIKE bench_row)" -c "CREATE TABLE sink_b (LIKE bench_row)" -c "VACUUM ANALYZE raw"
timed copy "COPY raw TO '$WORK/raw.jsonl'"
timed populate "INSERT INTO sink_a SELECT r.* FROM raw, jsonb_populate_record(NULL::bench_row, data::jsonb) r"
psql_db -c "CREATE TABLE typed AS SELECT * FROM sink_a" -c "VACUUM ANALYZE typed"
timed typed "INSERT INTO sink_b SELECT * FROM typed"
while read -r line; do
    k=$(echo "$line" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["label"].replace(" ", "_"), d["seconds"])')
    SECS[duck_${k%% *}]=${k#* }
    say "duckdb ${k%% *}: $(printf '%.2f' "${k#* }") s"
done < <(cd "$ROOT" && node bench/delivery_duckdb.mjs "$WORK/raw.jsonl" "$WORK" "{$COLS_DUCK}")

run_variant() {   # $1 label, $2 extra create_delivery_stream arguments
    local label=$1 args=$2 name start end secs rps mbs files out_bytes
    wanted "$(echo "$label" | sed 's/ (as is)//; s/,//g; s/ /_/g')" || return 0
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
    SECS[$name]=$secs
    psql_db -c "SELECT stream.delete_delivery_stream('$name')" >/dev/null
}

run_variant "json lines (as is)" "destination => '$WORK/json'"
run_variant "json lines, gzip" "destination => '$WORK/jsongz', compression => 'gzip'"
run_variant "csv with schema" "destination => '$WORK/csv', format => 'csv', schema => 'public.bench_row'"
run_variant "parquet snappy" "destination => '$WORK/pq', format => 'parquet', schema => 'public.bench_row', compression => 'snappy'"
run_variant "parquet zstd" "destination => '$WORK/pqz', format => 'parquet', schema => 'public.bench_row', compression => 'zstd'"
run_variant "table destination" "destination_table => 'public.bench_sink'"

if [ "$PUTN" -gt 0 ]; then
    # 500 records a call, fewer when 500 would pass Firehose's 4 MiB a call
    PUTB=$(( 4000000 / (BYTES / N + 1) )); [ "$PUTB" -gt 500 ] && PUTB=500
    say "direct put: $PUTN records, $PUTB a call"
    psql_db -c "CREATE TABLE putsrc AS SELECT (rn - 1) / $PUTB AS b, array_agg('k' || rn ORDER BY rn) AS keys, array_agg(data ORDER BY rn) AS recs
                  FROM (SELECT row_number() OVER () AS rn, data FROM stream_data.s$SID LIMIT $PUTN) x GROUP BY 1" \
            -c "SELECT stream.create_stream('bput', $SHARDS)" \
            -c "SELECT stream.create_delivery_stream('bdput', destination => '$WORK/dput', buffer_size_mb => 128, buffer_interval_seconds => 900)"
    timed put_records "SELECT count(*) FROM putsrc, LATERAL stream.put_records('bput', keys, recs)"
    timed put_delivery "SELECT count(*) FROM putsrc, LATERAL stream.put_delivery_record_batch('bdput', recs)"
fi

ratio() {   # anchor / ours, or - when either is missing
    if [ -n "${SECS[$1]:-}" ] && [ -n "${SECS[$2]:-}" ]; then printf '%.2f' "$(echo "${SECS[$1]} / ${SECS[$2]}" | bc -l)"; else echo -; fi
}
sec() { if [ -n "${SECS[$1]:-}" ]; then printf '%.2f' "${SECS[$1]}"; else echo -; fi; }
ratios=(
    "| Parquet snappy | $(sec b_parquet_snappy) | DuckDB JSON→Parquet snappy, 1 thread | $(sec duck_parquet_snappy) | $(ratio duck_parquet_snappy b_parquet_snappy) | ≥ 1.0 |"
    "| Parquet zstd | $(sec b_parquet_zstd) | DuckDB JSON→Parquet zstd, 1 thread | $(sec duck_parquet_zstd) | $(ratio duck_parquet_zstd b_parquet_zstd) | ≥ 1.0 |"
    "| CSV with schema | $(sec b_csv_with_schema) | DuckDB JSON→CSV, 1 thread | $(sec duck_csv) | $(ratio duck_csv b_csv_with_schema) | ≥ 1.0 |"
    "| JSON lines as is | $(sec b_json_lines__as_is) | COPY raw JSON TO file | $(sec copy) | $(ratio copy b_json_lines__as_is) | ≥ 0.8 |"
    "| table destination | $(sec b_table_destination) | INSERT … jsonb_populate_record | $(sec populate) | $(ratio populate b_table_destination) | ≥ 2.0 |"
    "| table destination | $(sec b_table_destination) | INSERT … SELECT typed rows | $(sec typed) | $(ratio typed b_table_destination) | ≥ 0.8 |"
    "| put_delivery_record_batch | $(sec put_delivery) | put_records, same $PUTN records, ${PUTB:-500} a call | $(sec put_records) | $(ratio put_records put_delivery) | ≥ 0.85 |"
)

{
    echo "# Delivery stream throughput"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores; bench/delivery.sh with BENCH_DELIVERY_RECORDS=$N, BENCH_SHARDS=$SHARDS, BENCH_BUFFER_MB=$BUFFER_MB."
    echo "Input: $N JSON records already in a stream of $SHARDS shards, $BYTES bytes of record data, BENCH_PAD=$PAD, BENCH_EXTRA_COLS=$EXTRA"
    echo "(about $((BYTES / N)) bytes each). Time from create_delivery_stream (TRIM_HORIZON, interval 0) until the"
    echo "progress row counts every record delivered: reading, conversion, fsynced files renamed into place,"
    echo "manifest and checkpoints committed per batch. MB/s is of input record data."
    echo
    echo "| variant | seconds | records/s | MB/s | files | bytes written |"
    echo "|---|---:|---:|---:|---:|---:|"
    printf '%s\n' "${results[@]}"
    echo
    echo "Against the anchors (ratio = anchor seconds / ours; DuckDB writes without fsync):"
    echo
    echo "| ours | seconds | anchor | seconds | ratio | target |"
    echo "|---|---:|---|---:|---:|---:|"
    printf '%s\n' "${ratios[@]}"
} >"$OUT"
cat "$OUT"
