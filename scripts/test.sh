#!/usr/bin/env bash
# shellcheck disable=SC2317  # functions reached through "suite_$name"
# Run every test of the stream extension.
#
#   bash scripts/test.sh                     set up, then all suites
#   bash scripts/test.sh regress isolation   only the named suites
#
# Suites, in this order:
#   regress    pg_regress, one file per concept (sql/*.sql vs expected/*.out)
#   isolation  the isolation tester, one spec per concurrency invariant
#              (specs/*.spec vs expected/*.out)
#              Both run `make installcheck` with a throw-away instance of their
#              own (Makefile REGRESS_OPTS / ISOLATION_OPTS, test/stream.conf),
#              not the private cluster; under root as OS user postgres (initdb
#              refuses root), in log/regress/ and log/isolation/ (results,
#              regression.diffs, the instance's log).
#   tap        every test/t/*.pl (PostgreSQL's TAP framework, PostgreSQL::Test::Cluster),
#              one `make prove_installcheck PROVE_TESTS=<file>` each; every test makes
#              throw-away nodes of its own (crash/restart, dump/restore, no preload,
#              crash loops), never touching the private cluster.  TESTDIR, and so the
#              logs, is log/tap/<test>/ (tmp_check/log/regress_log_<test> says it all).
#              As root it runs as the OS user `postgres` (initdb refuses root), which
#              must be able to read the checkout.
#   pgtap      pg_prove on each test/pgtap/*.sql, in a freshly created database
#              stream_test that already has `pgtap` and `stream` installed
#   scripts    every executable file in test/scripts/ (sorted), run from the checkout
#              root with the environment of scripts/env.sh; exit status 0 = pass.
#              The cluster is started again after each script if it is down.
#
# Ends with a line "N passed, N failed" (each pg_regress test, isolation spec,
# TAP file, pgTAP file and script counts as one) and exits 1 if anything failed.
#
# Environment:
#   STREAM_PG_BIN              PostgreSQL to build, install and test with (scripts/env.sh)
#   STREAM_SKIP_PACKAGES=1 / STREAM_SKIP_BUILD=1   passed on to scripts/setup.sh
#   STREAM_SKIP_SETUP=1        do not run scripts/setup.sh (just make sure the cluster runs)
#   STREAM_PGTAP_TIMEOUT       seconds per pgTAP file (default 300)
#   STREAM_TAP_TIMEOUT         seconds per TAP file (default 600)
#   STREAM_TAP_TESTS           the TAP files to run (default test/t/*.pl)
#   STREAM_SCRIPT_TIMEOUT      seconds per test script (default 600)
#   STREAM_REGRESS_TIMEOUT     seconds per make installcheck (default 900)
set -uo pipefail

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
# pg_regress and the isolation tester through PGXS (`make installcheck`),
# each with a throw-away instance of its own (Makefile: --temp-instance,
# test/stream.conf), so neither needs the private cluster.  They run from
# log/<suite>/ with the checkout's Makefile; initdb refuses root, so under
# root they run as OS user postgres, who owns that directory.
# $1 = suite, $2 = label, $3 = inputs (a glob), then make arguments that
# keep the other runner out.  Each test counts as one.
run_pgxs_suite() {
    local suite=$1 label=$2 glob=$3
    shift 3
    heading "$label (make installcheck, temporary instance)"
    shopt -s nullglob
    # shellcheck disable=SC2206  # the glob is meant to expand
    local inputs=($glob)
    shopt -u nullglob
    if [ ${#inputs[@]} -eq 0 ]; then
        note "no $glob files: no $label tests to run"
        return
    fi
    local dir="$LOGDIR/$suite" out="$LOGDIR/$suite.out" rc=0
    local -a as_tester=()
    rm -rf "$dir"
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$dir"
        as_tester=(runuser -u postgres --)
        if ! runuser -u postgres -- test -r "$STREAM_ROOT/Makefile"; then
            fail "$label" "OS user postgres cannot read $STREAM_ROOT/Makefile (bash scripts/cluster.sh start grants o+x on the parent directories)"
            return
        fi
    fi
    (cd "$dir" && "${as_tester[@]}" timeout -k 10 "$REGRESS_TIMEOUT" \
        make -f "$STREAM_ROOT/Makefile" PG_CONFIG="$PG_CONFIG" "$@" installcheck) </dev/null 2>&1 | tee "$out" || rc=$?

    # PostgreSQL 15: "test name ... ok   12 ms" / "     name ... FAILED" (parallel groups);
    # newer releases: TAP "ok 1 - name" / "not ok 1 - name".
    local n_ok n_fail t
    n_ok=$(grep -cE '^(test +| +)[^ ]+ +\.\.\. +ok|^ok +[0-9]+ +[-+] ' "$out")
    n_fail=$(grep -cE '^(test +| +)[^ ]+ +\.\.\. +FAILED|^not ok +[0-9]+ +[-+] ' "$out")
    while read -r t; do
        [ -n "$t" ] && FAILED_NAMES+=("$suite: $t")
    done < <(sed -nE 's/^(test +| +)([^ ]+) +\.\.\. +FAILED.*/\2/p; s/^not ok +[0-9]+ +[-+] +([^ ]+).*/\1/p' "$out")
    PASSED=$((PASSED + n_ok))
    FAILED=$((FAILED + n_fail))
    note "$label: $n_ok passed, $n_fail failed (exit $rc)"

    if [ "$rc" -ne 0 ] && [ "$n_fail" -eq 0 ]; then
        fail "$label (make installcheck exited $rc)"
        find "$dir" -name postmaster.log -exec tail -n 40 {} \; 2>/dev/null
    elif [ "$rc" -eq 0 ] && [ "$n_ok" -eq 0 ]; then
        fail "$label (no test results found in the output)"
    fi
    local diffs
    diffs=$(find "$dir" -name regression.diffs | head -n 1)
    if [ "$rc" -ne 0 ] && [ -n "$diffs" ]; then
        heading "$diffs (first 600 lines)"
        head -n 600 "$diffs"
    fi
}

suite_regress() {
    run_pgxs_suite regress pg_regress 'sql/*.sql' ISOLATION=
}

suite_isolation() {
    run_pgxs_suite isolation "isolation tester" 'specs/*.spec' REGRESS=
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
[ ${#SUITES[@]} -gt 0 ] || SUITES=(regress isolation tap pgtap scripts)
for s in "${SUITES[@]}"; do
    case "$s" in regress|isolation|tap|pgtap|scripts) ;; *) echo "unknown suite: $s (regress, isolation, tap, pgtap, scripts)" >&2; exit 2 ;; esac
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
