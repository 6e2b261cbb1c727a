#!/usr/bin/env bash
# Parquet writer: stream.write_parquet files read back by DuckDB and hyparquet
# (node's test runner on test/readers/*.test.mjs), never by our own code.
set -euo pipefail
export LC_ALL=C

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd "$HERE/../.." && pwd -P)"
# shellcheck source=scripts/env.sh
source "$ROOT/scripts/env.sh"
cd "$ROOT"

DB=stream_parquet_test
T0=$(date +%s)
say() { printf '[50_parquet %3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }

command -v node >/dev/null 2>&1 || { echo "FAIL: node is not installed (scripts/setup.sh installs nodejs)"; exit 1; }
if [ ! -d node_modules/@duckdb/node-api ] || [ ! -d node_modules/hyparquet-compressors ]; then
    say "npm ci"
    npm ci --no-audit --no-fund >/dev/null
fi

# The server (OS user postgres) writes the files; this script reads them.
WORK="$(mktemp -d /tmp/stream_parquet.XXXXXX)"
chmod 777 "$WORK"

sqladm() { psql -X -q -At -v ON_ERROR_STOP=1 -d postgres "$@"; }
cleanup() {
    local rc=$?
    if [ "${STREAM_TEST_KEEP_DB:-0}" != 1 ]; then
        sqladm -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
        sqladm -c "DROP ROLE IF EXISTS pq_nobody" -c "DROP ROLE IF EXISTS pq_writer" >/dev/null 2>&1 || true
        rm -rf "$WORK"
    fi
    if [ "$rc" != 0 ]; then echo "50_parquet: FAILED ($(( $(date +%s) - T0 ))s)"; exit 1; fi
    echo "50_parquet: OK ($(( $(date +%s) - T0 ))s)"
}
trap cleanup EXIT

export PGOPTIONS="-c client_min_messages=warning"
sqladm -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -c "CREATE EXTENSION stream"
# the test-only functions, which a production install does not have
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -f test/sql/test_functions.sql

say "node --test test/readers (files in $WORK)"
PQ_TEST_DB="$DB" PQ_TEST_DIR="$WORK" node --test --test-reporter=spec test/readers/*.test.mjs
