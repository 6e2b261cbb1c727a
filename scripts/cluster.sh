#!/usr/bin/env bash
# Manage the private PostgreSQL 15 cluster of this checkout.
#
#   bash scripts/cluster.sh init      create + configure the data directory (no start)
#   bash scripts/cluster.sh start     init if needed, start unless already running
#   bash scripts/cluster.sh ensure    same as start (used after a test that may crash it)
#   bash scripts/cluster.sh restart   init if needed, (re)start so fresh .so / config are loaded
#   bash scripts/cluster.sh stop      fast shutdown if running
#   bash scripts/cluster.sh status    exit 0 if running and accepting connections
#   bash scripts/cluster.sh destroy   stop and delete the data directory
#   bash scripts/cluster.sh log [N]   print the last N (default 50) lines of the server log
#   bash scripts/cluster.sh config    print the server settings init/start write (touches nothing)
#
# Location/port come from scripts/env.sh (STREAM_PGDATA, STREAM_PGSOCK, STREAM_PGPORT);
# STREAM_PRELOAD overrides shared_preload_libraries (default 'stream,pg_cron'),
# so a second private cluster is e.g.
#   STREAM_PGDATA=/tmp/c2/data STREAM_PGSOCK=/tmp/c2/sock STREAM_PGPORT=5497 bash scripts/cluster.sh start
#
# The server runs as the OS user `postgres` when invoked as root (initdb refuses root),
# otherwise as the invoking user.  The database superuser is always `postgres`, trust
# authentication, unix socket only.
set -euo pipefail

# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

PG_OS_USER=postgres
log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }

# Run a command as the server's OS user, from / (the caller's cwd may be unreadable).
as_pg() {
    if is_root; then
        (cd / && runuser -u "$PG_OS_USER" -- "$@")
    else
        (cd / && "$@")
    fi
}

check_binaries() {
    [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] ||
        die "PostgreSQL 15 server binaries not found in $PG_BIN (run scripts/setup.sh, or apt-get install postgresql-15)"
    if is_root; then
        id "$PG_OS_USER" >/dev/null 2>&1 || die "OS user '$PG_OS_USER' does not exist (it comes with the postgresql-15 package)"
    fi
}

# Make sure the server's OS user can traverse every parent directory of $1.
ensure_traversable() {
    is_root || return 0
    local d
    d="$(dirname "$1")"
    while :; do
        if ! runuser -u "$PG_OS_USER" -- test -x "$d" 2>/dev/null; then
            log "granting o+x on $d so that OS user '$PG_OS_USER' can reach $1"
            chmod o+x "$d"
        fi
        [ "$d" = / ] && break
        d="$(dirname "$d")"
    done
}

prepare_dir() {   # $1 = dir, $2 = mode
    mkdir -p "$1"
    ensure_traversable "$1"
    if is_root; then
        if [ "$(stat -c %U "$1")" != "$PG_OS_USER" ]; then
            chown -R "$PG_OS_USER:$PG_OS_USER" "$1"
        fi
    fi
    chmod "$2" "$1"
}

# The server settings of a cluster for the extension; also what the throw-away
# nodes of the TAP tests get (test/lib/StreamNode.pm runs `cluster.sh config`).
print_config() {
    cat <<EOF
port = $STREAM_PGPORT
listen_addresses = ''
unix_socket_directories = '$STREAM_PGSOCK'
shared_preload_libraries = '${STREAM_PRELOAD-stream,pg_cron}'
cron.database_name = 'postgres'
# pg_cron connects over libpq: use the unix socket (no TCP listener here).
cron.host = '$STREAM_PGSOCK'
max_prepared_transactions = 10
max_worker_processes = 32
fsync = on
restart_after_crash = on
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
EOF
}

write_config() {
    local conf="$STREAM_PGDATA/stream_cluster.conf"
    {
        echo "# Written by scripts/cluster.sh on every init/start/restart: edit the script, not this file."
        print_config
    } >"$conf"
    is_root && chown "$PG_OS_USER:$PG_OS_USER" "$conf"
    if ! grep -q "^include_if_exists = 'stream_cluster.conf'" "$STREAM_PGDATA/postgresql.conf"; then
        printf "\n# private cluster settings for the stream extension\ninclude_if_exists = 'stream_cluster.conf'\n" \
            >>"$STREAM_PGDATA/postgresql.conf"
    fi
}

cmd_init() {
    check_binaries
    prepare_dir "$STREAM_PGSOCK" 755
    if [ -f "$STREAM_PGDATA/PG_VERSION" ]; then
        local v
        v="$(cat "$STREAM_PGDATA/PG_VERSION")"
        [ "$v" = 15 ] || die "$STREAM_PGDATA holds a PostgreSQL $v cluster; remove it (bash scripts/cluster.sh destroy)"
        prepare_dir "$STREAM_PGDATA" 700
    else
        if [ -d "$STREAM_PGDATA" ] && [ -n "$(ls -A "$STREAM_PGDATA")" ]; then
            die "$STREAM_PGDATA exists, is not empty and is not a PostgreSQL data directory"
        fi
        prepare_dir "$STREAM_PGDATA" 700
        log "initdb $STREAM_PGDATA"
        as_pg "$PG_BIN/initdb" -D "$STREAM_PGDATA" -U postgres --auth=trust \
            -E UTF8 --locale=C.UTF-8 >"$STREAM_PGSOCK/initdb.log.tmp" 2>&1 || {
            cat "$STREAM_PGSOCK/initdb.log.tmp" >&2
            rm -f "$STREAM_PGSOCK/initdb.log.tmp"
            die "initdb failed"
        }
        rm -f "$STREAM_PGSOCK/initdb.log.tmp"
    fi
    write_config
}

is_running() {
    [ -f "$STREAM_PGDATA/postmaster.pid" ] || return 1
    as_pg "$PG_BIN/pg_ctl" -D "$STREAM_PGDATA" status >/dev/null 2>&1
}

wait_ready() {   # wait until the server accepts connections (e.g. after crash recovery)
    local _
    for _ in $(seq 1 120); do
        if "$PG_BIN/pg_isready" -q -h "$STREAM_PGSOCK" -p "$STREAM_PGPORT" -U postgres -d postgres; then
            return 0
        fi
        sleep 0.5
    done
    cmd_log 40 >&2
    die "server on $STREAM_PGSOCK port $STREAM_PGPORT is not accepting connections"
}

do_start() {
    local attempt
    for attempt in $(seq 1 15); do
        if as_pg "$PG_BIN/pg_ctl" -D "$STREAM_PGDATA" -l "$STREAM_PGLOG" -w -t 120 -s start; then
            wait_ready
            log "running: PGHOST=$STREAM_PGSOCK PGPORT=$STREAM_PGPORT PGUSER=postgres (data $STREAM_PGDATA)"
            return 0
        fi
        # After a SIGKILLed postmaster, its zombie or orphaned children may hold the
        # pid file / old shared memory for a moment: retry before giving up.
        log "start attempt $attempt failed; retrying"
        sleep 2
    done
    cmd_log 40 >&2
    die "could not start the server (log: $STREAM_PGLOG)"
}

cmd_start() {
    cmd_init
    local _
    for _ in $(seq 1 240); do
        if ! is_running; then
            log "starting on $STREAM_PGSOCK port $STREAM_PGPORT"
            do_start
            return 0
        fi
        # Running (or a postmaster that was just killed and not yet reaped, or one
        # still in crash recovery): wait until it accepts connections or goes away.
        if "$PG_BIN/pg_isready" -q -h "$STREAM_PGSOCK" -p "$STREAM_PGPORT" -U postgres -d postgres; then
            log "already running on $STREAM_PGSOCK port $STREAM_PGPORT"
            return 0
        fi
        sleep 0.5
    done
    cmd_log 40 >&2
    die "server on $STREAM_PGSOCK port $STREAM_PGPORT is running but not accepting connections"
}

cmd_restart() {
    cmd_init
    if is_running; then
        log "restarting on $STREAM_PGSOCK port $STREAM_PGPORT"
        as_pg "$PG_BIN/pg_ctl" -D "$STREAM_PGDATA" -m fast -w -t 120 -s stop || die "could not stop the server"
    else
        log "starting on $STREAM_PGSOCK port $STREAM_PGPORT"
    fi
    do_start
}

cmd_stop() {
    check_binaries
    if is_running; then
        log "stopping ($STREAM_PGDATA)"
        as_pg "$PG_BIN/pg_ctl" -D "$STREAM_PGDATA" -m fast -w -t 120 -s stop || {
            log "fast shutdown failed; trying immediate"
            as_pg "$PG_BIN/pg_ctl" -D "$STREAM_PGDATA" -m immediate -w -t 60 -s stop
        }
    else
        log "not running ($STREAM_PGDATA)"
    fi
}

cmd_status() {
    if is_running && "$PG_BIN/pg_isready" -q -h "$STREAM_PGSOCK" -p "$STREAM_PGPORT" -U postgres -d postgres; then
        log "running on $STREAM_PGSOCK port $STREAM_PGPORT"
        return 0
    fi
    log "not running ($STREAM_PGDATA)"
    return 1
}

cmd_destroy() {
    [ -d "$STREAM_PGDATA" ] || { log "nothing to destroy at $STREAM_PGDATA"; return 0; }
    cmd_stop
    log "removing $STREAM_PGDATA"
    rm -rf "$STREAM_PGDATA"
}

cmd_log() {
    local n="${1:-50}"
    if [ -f "$STREAM_PGLOG" ]; then
        echo "----- last $n lines of $STREAM_PGLOG -----"
        tail -n "$n" "$STREAM_PGLOG"
        echo "-----"
    else
        echo "(no server log at $STREAM_PGLOG)"
    fi
}

case "${1:-}" in
    init)    cmd_init ;;
    start|ensure) cmd_start ;;
    restart) cmd_restart ;;
    stop)    cmd_stop ;;
    status)  cmd_status ;;
    destroy) cmd_destroy ;;
    log)     cmd_log "${2:-50}" ;;
    config)  print_config ;;
    *) echo "usage: $0 {init|start|ensure|restart|stop|status|destroy|log [N]|config}" >&2; exit 2 ;;
esac
