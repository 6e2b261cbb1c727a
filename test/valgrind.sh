#!/usr/bin/env bash
# Memory errors: run the regression suite (pg_regress and pgTAP) and the
# round-trip property test once with the whole server (postmaster and every child: backends, the
# delivery and pg_cron workers) under valgrind memcheck, and count the error
# reports that involve the extension.
#
#   bash test/valgrind.sh
#
# Not part of CI (it takes several minutes): scripts/test.sh runs only the
# executable files directly in test/scripts/.  Uses the checkout's private
# cluster (scripts/env.sh: STREAM_PG_BIN, STREAM_PGPORT, ...), which it stops,
# starts under valgrind, and leaves stopped.
#
# What it does:
#   1. builds stream.so with STREAM_VALGRIND=1 (-DUSE_VALGRIND: the client
#      requests of utils/memdebug.h in our code; Debian's PostgreSQL is not
#      built with USE_VALGRIND, so palloc'd memory is not instrumented, but
#      our reused result buffer is marked undefined at the start of each
#      read, so a byte of a result that a read does not write is reported)
#      and -Werror, and installs it;
#   2. starts `valgrind --tool=memcheck --trace-children=yes --track-origins=yes
#      --suppressions=test/valgrind.supp postgres -c jit=off ...` as the
#      server's OS user, logs in valgrind-out/vg.<pid>.log (one per process);
#   3. runs `make installcheck` (pg_regress and the isolation specs, against
#      this server: STREAM_TEMP_INSTANCE=0), the pgTAP files and test/scripts/15_roundtrip.py
#      (STREAM_PROP_RECORDS=$STREAM_VALGRIND_RECORDS, default 1000, timeouts x10);
#   4. stops the server, rebuilds and installs the ordinary stream.so, and
#      sorts the reports (test/valgrind_report.py): those with a frame in
#      stream.so (in the error's stack above PostgreSQL's commit/executor
#      machinery, or where the bad bytes were allocated or created) are ours
#      and are written to valgrind-out/stream-reports.txt; the others are
#      PostgreSQL's own (counted and summarised, left in the per-process logs).
#
# --error-exitcode is not used: a backend exiting with it would make the
# postmaster restart every process (a "crash"), and PostgreSQL's own reports
# (not built for valgrind) would then end the run; the reports are counted
# from the logs instead.
#
# Exit status: 0 when every suite passes, the server log shows no crash and no
# report involves stream.so.  About 9 minutes on 2 cores (regress 5, pgTAP 1.5,
# round trip of 1000-1500 records 2-3).
#
# Environment:
#   STREAM_VALGRIND_RECORDS   records of the property test (default 1000)
#   STREAM_VALGRIND_SUITES    default "regress pgtap roundtrip"
#   STREAM_PROP_SEED          passed on to the property test
set -uo pipefail

# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
cd "$STREAM_ROOT" || exit 1

say() { printf '[valgrind %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "ERROR: $*"; exit 2; }

command -v valgrind >/dev/null || die "valgrind is not installed (apt-get install valgrind)"
OUT="${STREAM_VALGRIND_OUT:-$STREAM_ROOT/valgrind-out}"   # not log/: make clean removes that
SUITES="${STREAM_VALGRIND_SUITES:-regress pgtap roundtrip}"
RECORDS="${STREAM_VALGRIND_RECORDS:-1000}"
SUPP="$STREAM_ROOT/test/valgrind.supp"
PG_OS_USER=postgres

as_pg() {
    if [ "$(id -u)" = 0 ]; then (cd / && runuser -u "$PG_OS_USER" -- "$@"); else (cd / && "$@"); fi
}
install_cmd() {
    if [ "$(id -u)" = 0 ]; then make install "$@"; else sudo make install "$@"; fi
}
build() {   # build and install stream.so with the given make variables
    make clean PG_CONFIG="$PG_CONFIG" >/dev/null &&
        make -j"$(nproc 2>/dev/null || echo 2)" PG_CONFIG="$PG_CONFIG" STREAM_WERROR=1 "$@" >"$OUT/build.log" 2>&1 &&
        install_cmd PG_CONFIG="$PG_CONFIG" >>"$OUT/build.log" 2>&1
}

rm -rf "$OUT"
mkdir -p "$OUT"
[ "$(id -u)" = 0 ] && chown "$PG_OS_USER" "$OUT"

say "building stream.so with STREAM_VALGRIND=1"
build STREAM_VALGRIND=1 || { cat "$OUT/build.log"; die "build failed"; }

bash scripts/cluster.sh stop >/dev/null 2>&1 || true
bash scripts/cluster.sh init >/dev/null || die "cluster init failed"

LOG_OFFSET=$(stat -c %s "$STREAM_PGLOG" 2>/dev/null || echo 0)
say "starting postgres under valgrind (logs in $OUT)"
T0=$(date +%s)
as_pg valgrind --tool=memcheck --trace-children=yes --track-origins=yes \
    --error-limit=no --num-callers=64 --leak-check=no --read-var-info=no --fullpath-after= \
    --suppressions="$SUPP" --log-file="$OUT/vg.%p.log" \
    "$PG_BIN/postgres" -D "$STREAM_PGDATA" -c jit=off -c max_parallel_workers_per_gather=0 \
    >>"$STREAM_PGLOG" 2>&1 &
for _ in $(seq 1 600); do
    "$PG_BIN/pg_isready" -q -h "$STREAM_PGSOCK" -p "$STREAM_PGPORT" -d postgres && break
    sleep 1
done
"$PG_BIN/pg_isready" -q -h "$STREAM_PGSOCK" -p "$STREAM_PGPORT" -d postgres || die "the server did not start under valgrind"
say "server up after $(( $(date +%s) - T0 )) s"

FAILED=()
for s in $SUITES; do
    t=$(date +%s)
    case "$s" in
        regress)
            say "make installcheck"
            make installcheck PG_CONFIG="$PG_CONFIG" STREAM_TEMP_INSTANCE=0 >"$OUT/regress.out" 2>&1 || FAILED+=(regress)
            grep -E '^(test +| +)[^ ]+ +\.\.\. ' "$OUT/regress.out" >&2 ;;
        pgtap)
            say "pgTAP (scripts/test.sh pgtap against the running server)"
            STREAM_SKIP_SETUP=1 CI= bash scripts/test.sh pgtap >"$OUT/pgtap.out" 2>&1 || FAILED+=(pgtap)
            grep -E '^\[test\] (PASS|FAIL)|passed, .* failed' "$OUT/pgtap.out" >&2 ;;
        roundtrip)
            say "test/scripts/15_roundtrip.py with $RECORDS records"
            STREAM_PROP_RECORDS="$RECORDS" STREAM_PROP_TIMEOUT_SCALE=10 \
                "$STREAM_PYTHON" test/scripts/15_roundtrip.py >"$OUT/roundtrip.out" 2>&1 || FAILED+=(roundtrip)
            grep -E 'seed|figures|verified|FAIL|OK|FAILED' "$OUT/roundtrip.out" | cut -c1-400 >&2 ;;
        *) die "unknown suite $s (regress, pgtap, roundtrip)" ;;
    esac
    say "$s: $(( $(date +%s) - t )) s"
done

say "stopping the server"
as_pg "$PG_BIN/pg_ctl" -D "$STREAM_PGDATA" -m fast -w -t 600 -s stop ||
    as_pg "$PG_BIN/pg_ctl" -D "$STREAM_PGDATA" -m immediate -w -t 120 -s stop
wait
CRASHES=$(tail -c +"$((LOG_OFFSET + 1))" "$STREAM_PGLOG" | grep -cE 'terminated by signal|PANIC:|TRAP:' || true)

say "rebuilding the ordinary stream.so"
build || say "WARNING: the rebuild failed (see $OUT/build.log)"

# Sort the reports of every process: ours (a frame in stream.so) or PostgreSQL's.
"$STREAM_PYTHON" test/valgrind_report.py "$OUT" "$STREAM_ROOT"
RC=$?
say "server crashes in the log: $CRASHES"
say "suites failed: ${FAILED[*]:-none}; reports in stream.so: $( [ $RC = 0 ] && echo 0 || echo 'see above')"
say "total $(( $(date +%s) - T0 )) s"
[ $RC = 0 ] && [ ${#FAILED[@]} -eq 0 ] && [ "$CRASHES" = 0 ]
