#!/usr/bin/env bash
# Run every test of the stream extension against the private cluster.
#
#   bash scripts/test.sh                 set up, then all suites
#   bash scripts/test.sh regress pgtap   only the named suites (regress, tap, pgtap, scripts)
#
# Suites:
#   regress  pg_regress via `make installcheck` (sql/*.sql vs expected/*.out)
#   tap      every test/t/*.pl (PostgreSQL's TAP framework, PostgreSQL::Test::Cluster),
#            one `make prove_installcheck PROVE_TESTS=<file>` each; every test makes
#            throw-away nodes of its own (crash/restart, dump/restore, no preload,
#            crash loops), never touching the private cluster.  TESTDIR, and so the
#            logs, is log/tap/<test>/ (tmp_check/log/regress_log_<test> says it all).
#            As root it runs as the OS user `postgres` (initdb refuses root), which
#            must be able to read the checkout.
#   pgtap    pg_prove on each test/pgtap/*.sql, in a freshly created database
#            stream_test that already has `pgtap` and `stream` installed
#   scripts  every executable file in test/scripts/ (sorted), run from the checkout
#            root with the environment of scripts/env.sh; exit status 0 = pass.
#            The cluster is started again after each script if it is down.
#
# Ends with a line "N passed, N failed" (each pg_regress test, TAP file, pgTAP
# file and script counts as one) and exits 1 if anything failed.
#
# Environment:
#   STREAM_SKIP_PACKAGES=1 / STREAM_SKIP_BUILD=1   passed on to scripts/setup.sh
#   STREAM_SKIP_SETUP=1        do not run scripts/setup.sh (just make sure the cluster runs)
#   STREAM_PGTAP_TIMEOUT       seconds per pgTAP file (default 300)
#   STREAM_TAP_TIMEOUT         seconds per TAP file (default 600)
#   STREAM_TAP_TESTS           the TAP files to run (default test/t/*.pl)
#   STREAM_SCRIPT_TIMEOUT      seconds per test script (default 600)
#   STREAM_REGRESS_TIMEOUT     seconds for make installcheck (default 900)
set -uo pipefail
# shellcheck disable=SC2317  # functions reached through "suite_$name"

# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$STREAM_ROOT" || exit 1

PGTAP_TIMEOUT="${STREAM_PGTAP_TIMEOUT:-300}"
TAP_TIMEOUT="${STREAM_TAP_TIMEOUT:-600}"
SCRIPT_TIMEOUT="${STREAM_SCRIPT_TIMEOUT:-600}"
REGRESS_TIMEOUT="${STREAM_REGRESS_TIMEOUT:-900}"
LOGDIR="$STREAM_ROOT/log"
mkdir -p "$LOGDIR"

PASSED=0
FAILED=0
FAILED_NAMES=()
START_TIME=$(date +%s)

heading() { printf '\n==== %s\n' "$*"; }
note() { printf '[test] %s\n' "$*"; }
pass() { PASSED=$((PASSED + 1)); note "PASS $1"; }
fail() { FAILED=$((FAILED + 1)); FAILED_NAMES+=("$1"); note "FAIL $1${2:+: $2}"; }

finish() {
    local crashes
    if [ -n "${LOG_OFFSET:-}" ] && [ -f "$STREAM_PGLOG" ]; then
        # Report unexpected backend crashes (kill -9 by crash tests is expected).
        crashes="$(tail -c +"$((LOG_OFFSET + 1))" "$STREAM_PGLOG" 2>/dev/null |
            grep -E 'terminated by signal|PANIC:|TRAP:' | grep -v 'signal 9: Killed' || true)"
        if [ -n "$crashes" ]; then
            heading "WARNING: server log ($STREAM_PGLOG) shows crashes during this run"
            printf '%s\n' "$crashes" | head -n 40
        fi
    fi
    if [ "${CI:-}" = true ]; then
        bash scripts/cluster.sh stop || true   # CI: leave nothing running
    fi
    heading "summary ($(( $(date +%s) - START_TIME ))s)"
    if [ ${#FAILED_NAMES[@]} -gt 0 ]; then
        echo "failed:"
        printf '  %s\n' "${FAILED_NAMES[@]}"
    fi
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
    exit $?
}

ensure_cluster() {
    if ! bash scripts/cluster.sh ensure >"$LOGDIR/cluster-ensure.out" 2>&1; then
        cat "$LOGDIR/cluster-ensure.out"
        return 1
    fi
}

psql_admin() { psql -X -q -v ON_ERROR_STOP=1 -d postgres "$@"; }

# ---------------------------------------------------------------- suites
suite_regress() {
    heading "pg_regress (make installcheck)"
    shopt -s nullglob
    local sqlfiles=(sql/*.sql)
    shopt -u nullglob
    if [ ${#sqlfiles[@]} -eq 0 ]; then
        note "no sql/*.sql files: no pg_regress tests to run"
        return
    fi
    ensure_cluster || { fail "pg_regress" "cluster not running"; return; }

    local out="$LOGDIR/installcheck.out" rc=0
    rm -f regression.diffs regression.out
    timeout -k 10 "$REGRESS_TIMEOUT" make installcheck PG_CONFIG="$PG_CONFIG" </dev/null 2>&1 | tee "$out" || rc=$?

    # PostgreSQL 15: "test name ... ok   12 ms" / "     name ... FAILED" (parallel groups);
    # newer releases: TAP "ok 1 - name" / "not ok 1 - name".
    local n_ok n_fail
    n_ok=$(grep -cE '^(test +| +)[^ ]+ +\.\.\. +ok|^ok +[0-9]+ +[-+] ' "$out")
    n_fail=$(grep -cE '^(test +| +)[^ ]+ +\.\.\. +FAILED|^not ok +[0-9]+ +[-+] ' "$out")
    local t
    while read -r t; do
        [ -n "$t" ] && FAILED_NAMES+=("pg_regress: $t")
    done < <(sed -nE 's/^(test +| +)([^ ]+) +\.\.\. +FAILED.*/\2/p; s/^not ok +[0-9]+ +[-+] +([^ ]+).*/\1/p' "$out")
    PASSED=$((PASSED + n_ok))
    FAILED=$((FAILED + n_fail))
    note "pg_regress: $n_ok passed, $n_fail failed (exit $rc)"

    if [ "$rc" -ne 0 ] && [ "$n_fail" -eq 0 ]; then
        fail "pg_regress (make installcheck exited $rc)"
    elif [ "$rc" -eq 0 ] && [ "$n_ok" -eq 0 ]; then
        fail "pg_regress (no test results found in the output)"
    fi
    if [ "$rc" -ne 0 ] && [ -f regression.diffs ]; then
        heading "regression.diffs (first 600 lines)"
        head -n 600 regression.diffs
    fi
}

# Stop the nodes a TAP test left running (it was killed by the timeout before
# its END block could stop them): every postmaster under $1.
stop_tap_nodes() {
    local pid
    for pid in "$1"/tmp_check/t_*_data/pgdata/postmaster.pid; do
        [ -f "$pid" ] || continue
        note "stopping the node the test left running: $(dirname "$pid")"
        "${TAP_AS[@]}" "$PG_BIN/pg_ctl" -D "$(dirname "$pid")" -m immediate -w -t 60 stop >/dev/null 2>&1 || true
    done
}

suite_tap() {
    heading "TAP (make prove_installcheck, test/t/*.pl)"
    shopt -s nullglob
    # shellcheck disable=SC2206  # STREAM_TAP_TESTS: file names or globs
    local files=(${STREAM_TAP_TESTS:-test/t/*.pl})
    shopt -u nullglob
    if [ ${#files[@]} -eq 0 ]; then
        note "no test/t/*.pl files: no TAP tests to run"
        return
    fi
    TAP_AS=()
    if [ "$(id -u)" = 0 ]; then
        TAP_AS=(runuser -u postgres --)
        if ! (cd / && runuser -u postgres -- test -r "$STREAM_ROOT/test/lib/StreamNode.pm"); then
            for f in "${files[@]}"; do fail "tap: $f" "the OS user postgres cannot read $STREAM_ROOT"; done
            return
        fi
    fi
    local f name dir rc t0 crashes
    for f in "${files[@]}"; do
        name="$(basename "$f" .pl)"
        dir="$LOGDIR/tap/$name"
        heading "TAP $f"
        rm -rf "$dir"
        mkdir -p "$dir"
        [ ${#TAP_AS[@]} -eq 0 ] || chown postgres: "$dir"
        rc=0
        t0=$(date +%s)
        timeout -k 10 "$TAP_TIMEOUT" "${TAP_AS[@]}" make -s --no-print-directory -C "$dir" -f "$STREAM_ROOT/Makefile" \
            prove_installcheck PG_CONFIG="$PG_CONFIG" PROVE_TESTS="$f" PROVE_FLAGS=-v </dev/null || rc=$?
        # as finish() does for the private cluster: crashes the test did not make (SIGKILLs are its own)
        crashes="$(cat "$dir"/tmp_check/log/*.log 2>/dev/null |
            grep -E 'terminated by signal|PANIC:|TRAP:' | grep -v 'signal 9: Killed' || true)"
        if [ -n "$crashes" ]; then
            heading "WARNING: the server logs of $f ($dir/tmp_check/log/) show crashes"
            printf '%s\n' "$crashes" | head -n 40
        fi
        if [ "$rc" -eq 0 ]; then pass "tap: $f ($(( $(date +%s) - t0 ))s)"; continue; fi
        if [ "$rc" -eq 124 ]; then fail "tap: $f" "timed out after ${TAP_TIMEOUT}s"
        else fail "tap: $f" "exit status $rc"
        fi
        stop_tap_nodes "$dir"
        if [ -f "$dir/tmp_check/log/regress_log_$name" ]; then
            heading "last 60 lines of $dir/tmp_check/log/regress_log_$name"
            tail -n 60 "$dir/tmp_check/log/regress_log_$name"
        fi
    done
}

suite_pgtap() {
    heading "pgTAP (pg_prove test/pgtap/*.sql)"
    shopt -s nullglob
    local files=(test/pgtap/*.sql)
    shopt -u nullglob
    if [ ${#files[@]} -eq 0 ]; then
        note "no test/pgtap/*.sql files: no pgTAP tests to run"
        return
    fi
    if ! command -v pg_prove >/dev/null 2>&1; then
        for f in "${files[@]}"; do fail "pgtap: $f" "pg_prove not installed"; done
        return
    fi
    local f rc
    for f in "${files[@]}"; do
        printf -- '-- %s\n' "$f"
        if ! ensure_cluster; then fail "pgtap: $f" "cluster not running"; continue; fi
        if ! psql_admin -c 'SET client_min_messages = warning' -c 'DROP DATABASE IF EXISTS stream_test WITH (FORCE)' -c 'CREATE DATABASE stream_test' ||
           ! psql -X -q -v ON_ERROR_STOP=1 -d stream_test -c 'CREATE EXTENSION pgtap' -c 'CREATE EXTENSION stream'; then
            fail "pgtap: $f" "could not prepare database stream_test"
            continue
        fi
        rc=0
        timeout -k 10 "$PGTAP_TIMEOUT" pg_prove --nocolor --failures --comments -d stream_test "$f" </dev/null || rc=$?
        if [ "$rc" -eq 0 ]; then pass "pgtap: $f"
        elif [ "$rc" -eq 124 ]; then fail "pgtap: $f" "timed out after ${PGTAP_TIMEOUT}s"
        else fail "pgtap: $f" "pg_prove exited $rc"
        fi
    done
}

suite_scripts() {
    heading "scripted tests (test/scripts/)"
    if [ ! -d test/scripts ]; then
        note "no test/scripts directory: no scripted tests to run"
        return
    fi
    local f rc ran=0 t0
    while IFS= read -r f; do
        [ -f "$f" ] || continue
        if [ ! -x "$f" ]; then
            note "not run (not executable, treated as a helper): $f"
            continue
        fi
        ran=$((ran + 1))
        heading "script $f"
        if ! ensure_cluster; then fail "script: $f" "cluster not running before the script"; continue; fi
        rc=0
        t0=$(date +%s)
        timeout -k 10 "$SCRIPT_TIMEOUT" "$f" </dev/null || rc=$?
        if [ "$rc" -eq 0 ]; then pass "script: $f ($(( $(date +%s) - t0 ))s)"
        elif [ "$rc" -eq 124 ]; then fail "script: $f" "timed out after ${SCRIPT_TIMEOUT}s"
        else fail "script: $f" "exit status $rc"
        fi
        # A script may stop, restart or crash the cluster: bring it back.
        if ! ensure_cluster; then
            note "cluster could not be started after $f"
            bash scripts/cluster.sh log 40
        fi
    done < <(find test/scripts -mindepth 1 -maxdepth 1 -type f | LC_ALL=C sort)
    [ "$ran" -gt 0 ] || note "no executable files in test/scripts: no scripted tests to run"
}

# ---------------------------------------------------------------- main
SUITES=("$@")
[ ${#SUITES[@]} -gt 0 ] || SUITES=(regress tap pgtap scripts)
for s in "${SUITES[@]}"; do
    case "$s" in regress|tap|pgtap|scripts) ;; *) echo "unknown suite: $s (regress, tap, pgtap, scripts)" >&2; exit 2 ;; esac
done

if [ "${STREAM_SKIP_SETUP:-0}" = 1 ]; then
    heading "setup skipped (STREAM_SKIP_SETUP=1): making sure the cluster runs"
    ensure_cluster || { fail "setup (cluster start)"; finish; }
else
    heading "setup (packages, build, install, cluster)"
    if ! bash scripts/setup.sh </dev/null; then
        fail "setup (scripts/setup.sh)"
        bash scripts/cluster.sh log 40 2>/dev/null || true
        finish
    fi
fi
LOG_OFFSET=$(stat -c %s "$STREAM_PGLOG" 2>/dev/null || echo 0)

for s in "${SUITES[@]}"; do
    "suite_$s"
done
finish
