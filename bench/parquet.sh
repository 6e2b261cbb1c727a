#!/usr/bin/env bash
# write_parquet against DuckDB's COPY ... TO parquet (one thread) and
# PostgreSQL's COPY ... TO csv, on the same 1 million mixed-type rows.
#
#   bash bench/parquet.sh            (uses the cluster of scripts/env.sh)
#   BENCH_ROWS=200000 bash bench/parquet.sh
#
# Each figure is the best of 3 runs.  MB/s is the CSV size of the rows divided
# by the time, so the three writers are compared on the same data volume.
# Prints a Markdown table and writes it to bench/results/parquet.md.
set -euo pipefail
export LC_ALL=C
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
# shellcheck source=scripts/env.sh
source "$ROOT/scripts/env.sh"
cd "$ROOT"

ROWS="${BENCH_ROWS:-1000000}"
DB=stream_bench_parquet
WORK="$(mktemp -d /tmp/stream_bench_parquet.XXXXXX)"
chmod 777 "$WORK"           # the server (OS user postgres) writes the files
trap 'rm -rf "$WORK"; psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
say() { printf '[bench/parquet] %s\n' "$*" >&2; }

[ -d node_modules/@duckdb/node-api ] || npm ci --no-audit --no-fund >/dev/null
export PGOPTIONS="-c client_min_messages=warning"
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
q -c "CREATE EXTENSION stream"

say "loading $ROWS rows"
q <<SQL
CREATE TABLE t (id bigint, user_id int, name text, ts timestamptz, amount numeric(12,2),
                score float8, flag boolean, day date, payload jsonb);
INSERT INTO t
SELECT g, ((g::bigint * 7919) % 100000)::int, 'customer ' || (g % 1000),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second 17 microseconds',
       ((g * 37) % 1000000) / 100.0,
       CASE WHEN g % 3 = 0 THEN NULL ELSE g / 7.0 END,
       g % 2 = 0, date '2024-01-01' + g % 365,
       jsonb_build_object('k', g % 50, 'tag', 'v' || (g % 7))
  FROM generate_series(1, $ROWS) g;
VACUUM ANALYZE t;
SQL

# Milliseconds of one statement, best of 3 (psql's \timing).
best_ms() {
    local sqltext=$1 best="" ms i
    for i in 1 2 3; do
        ms=$( { printf '\\timing on\n%s\n' "$sqltext" | q; } | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1)
        if [ -z "$best" ] || awk -v a="$ms" -v b="$best" 'BEGIN{exit !(a<b)}'; then best=$ms; fi
    done
    printf '%s\n' "$best"
}

q -c "SELECT count(*) FROM t" >/dev/null   # warm the cache
say "PostgreSQL COPY TO csv"
CSV_MS=$(best_ms "COPY t TO '$WORK/t.csv' (FORMAT csv, HEADER)")
CSV_BYTES=$(stat -c %s "$WORK/t.csv")
declare -A PQ_MS PQ_BYTES DK_MS DK_BYTES
for codec in snappy zstd none; do
    say "write_parquet $codec"
    PQ_MS[$codec]=$(best_ms "SELECT stream.write_parquet('SELECT * FROM t', '$WORK/pg_$codec.parquet', '$codec')")
    PQ_BYTES[$codec]=$(stat -c %s "$WORK/pg_$codec.parquet")
done
say "DuckDB COPY TO parquet (threads=1)"
while IFS= read -r line; do
    codec=$(node -e 'const o=JSON.parse(process.argv[1]); console.log(o.codec)' "$line")
    DK_MS[$codec]=$(node -e 'console.log(JSON.parse(process.argv[1]).ms.toFixed(1))' "$line")
    DK_BYTES[$codec]=$(node -e 'console.log(JSON.parse(process.argv[1]).bytes)' "$line")
done < <(node bench/parquet_duckdb.mjs "$WORK/t.csv" "$WORK" snappy zstd uncompressed)
DK_MS[none]=${DK_MS[uncompressed]}; DK_BYTES[none]=${DK_BYTES[uncompressed]}

# the files must hold the same rows
check=$(node -e '
  const { DuckDBInstance } = await import("@duckdb/node-api");
  const c = await (await DuckDBInstance.create(":memory:")).connect();
  const r = await c.runAndReadAll(`SELECT count(*) AS n, sum(id) AS s, sum(amount) AS a, count(score) AS sc FROM read_parquet("${process.argv[1]}")`);
  console.log(JSON.stringify(r.getRowObjectsJson()[0]));' --input-type=module "$WORK/pg_snappy.parquet")
say "write_parquet file read back by DuckDB: $check"

row() {   # name ms bytes
    awk -v n="$1" -v ms="$2" -v b="$3" -v rows="$ROWS" -v csv="$CSV_BYTES" -v base="$CSV_MS" -v dk="${4:-}" 'BEGIN{
        printf "| %s | %.0f | %.2f | %.0f | %.1f | %.2f | %s |\n", n, ms, rows/(ms/1000)/1e6, csv/1e6/(ms/1000), b/1e6, base/ms, (dk == "" ? "" : sprintf("%.2f", dk/ms)) }'
}
OUT="$ROOT/bench/results/parquet.md"
mkdir -p "$(dirname "$OUT")"
{
    echo "# write_parquet benchmark"
    echo
    echo "$ROWS rows of (bigint, int, text, timestamptz, numeric(12,2), float8 with 1/3 NULL, boolean, date, jsonb);"
    echo "CSV size $(awk -v b="$CSV_BYTES" 'BEGIN{printf "%.1f", b/1e6}') MB. Best of 3 runs, $(nproc) cores, $(date -u +%Y-%m-%d)."
    echo "MB/s = CSV bytes of the rows per second. DuckDB $(node -e 'import("@duckdb/node-api").then(async m => { const c = await (await m.DuckDBInstance.create(":memory:")).connect(); console.log((await c.runAndReadAll("SELECT version() v")).getRowObjectsJson()[0].v) })') with threads=1, table loaded in memory from the CSV beforehand."
    echo
    echo "| writer | ms | M rows/s | MB/s | output MB | × PG COPY csv | × DuckDB same codec |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    row "PostgreSQL COPY TO csv" "$CSV_MS" "$CSV_BYTES"
    for codec in snappy zstd none; do
        row "stream.write_parquet $codec" "${PQ_MS[$codec]}" "${PQ_BYTES[$codec]}" "${DK_MS[$codec]}"
    done
    for codec in snappy zstd none; do
        row "DuckDB COPY TO parquet $codec" "${DK_MS[$codec]}" "${DK_BYTES[$codec]}"
    done
    echo
    echo "Targets: write_parquet ≥ 0.5× DuckDB single-threaded (last column) and ≥ 1× PostgreSQL's CSV COPY."
    echo
    echo "Data shape matters: name (1000 distinct), day (365) and payload (350 distinct jsonb documents) stay"
    echo "dictionary-encoded, and a jsonb document already in the chunk's dictionary is not printed again."
    echo "A column of distinct jsonb documents costs jsonb_out's printing per row, as COPY's does."
} | tee "$OUT"
