# shellcheck shell=bash
# Environment for the private PostgreSQL 15 cluster used by the demo, the tests
# and the benchmarks.  Source it:   source scripts/env.sh
#
# Overridable before sourcing (e.g. to run a second private cluster):
#   STREAM_PGDATA  data directory        (default <checkout>/.pgdata)
#   STREAM_PGSOCK  unix socket directory (default <checkout>/.pgsock)
#   STREAM_PGPORT  port                  (default 5499)
# The server log is always $STREAM_PGDATA/server.log (exported as STREAM_PGLOG).

_stream_env_src="${BASH_SOURCE[0]:-$0}"
STREAM_ROOT="$(cd "$(dirname "$_stream_env_src")/.." && pwd -P)"
unset _stream_env_src
export STREAM_ROOT

# STREAM_PG_BIN: server binaries to use (default Debian's); a relocated copy made
# by scripts/private-pg.sh lets several checkouts install and test side by side.
export PG_BIN="${STREAM_PG_BIN:-/usr/lib/postgresql/15/bin}"
export PG_CONFIG="$PG_BIN/pg_config"

_stream_abs() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *)  printf '%s\n' "$PWD/$1" ;;
    esac
}

export STREAM_PGDATA="$(_stream_abs "${STREAM_PGDATA:-$STREAM_ROOT/.pgdata}")"
export STREAM_PGPORT="${STREAM_PGPORT:-5499}"
if [ -n "${STREAM_PGSOCK:-}" ]; then
    STREAM_PGSOCK="$(_stream_abs "$STREAM_PGSOCK")"
else
    STREAM_PGSOCK="$STREAM_ROOT/.pgsock"
    # A unix socket path must fit in sun_path (107 bytes).  For a deeply nested
    # checkout fall back to a short, checkout-specific directory under /tmp.
    if [ $(( ${#STREAM_PGSOCK} + 20 )) -gt 107 ]; then
        STREAM_PGSOCK="/tmp/stream-pgsock-$(printf '%s' "$STREAM_ROOT" | cksum | cut -d' ' -f1)"
    fi
fi
export STREAM_PGSOCK
export STREAM_PGLOG="$STREAM_PGDATA/server.log"
unset -f _stream_abs

# libpq / psql / pg_regress / pg_prove / psycopg2 all read these.
export PGHOST="$STREAM_PGSOCK"
export PGPORT="$STREAM_PGPORT"
export PGUSER=postgres
export PGDATA="$STREAM_PGDATA"
unset PGHOSTADDR PGSERVICE PGPASSWORD PGSSLMODE PGOPTIONS 2>/dev/null || true

# Scripted tests use the Debian python (it has python3-psycopg2), not pyenv.
export STREAM_PYTHON=/usr/bin/python3

# PostgreSQL 15 binaries first, then /usr/bin so that `python3` is Debian's.
case ":$PATH:" in
    "$PG_BIN:/usr/bin:"*) ;;
    *) export PATH="$PG_BIN:/usr/bin:$PATH" ;;
esac

# Connection string usable by psycopg2 and friends.
export STREAM_DSN="host=$PGHOST port=$PGPORT user=$PGUSER"
