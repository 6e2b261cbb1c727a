#!/usr/bin/env bash
# Install what is missing (Debian 12, as root), build and install the extension,
# and (re)start the private PostgreSQL 15 cluster of this checkout.
#
#   bash scripts/setup.sh
#
# Environment:
#   STREAM_SKIP_PACKAGES=1  do not check/install Debian packages
#   STREAM_SKIP_BUILD=1     do not run make / make install
#   STREAM_WERROR=1         build with -Werror (always so when CI=true)
#   STREAM_PGDATA, STREAM_PGSOCK, STREAM_PGPORT  see scripts/env.sh
set -euo pipefail

# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$STREAM_ROOT"

say() { printf '[setup] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

PACKAGES=(
    build-essential
    postgresql-15
    postgresql-server-dev-15
    postgresql-15-cron
    postgresql-15-pgtap
    libtap-parser-sourcehandler-pgtap-perl
    libipc-run-perl             # PostgreSQL::Test::Cluster, the TAP tests of test/t/
    postgresql-15-pgq3
    libzstd-dev
    libsnappy-dev
    zlib1g-dev
    python3-psycopg2
    libpq-dev
    bc
)
# Node runs the independent Parquet readers of the tests (DuckDB, hyparquet);
# keep a newer node that is already there.
if ! command -v node >/dev/null 2>&1; then
    PACKAGES+=(nodejs npm)
fi

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        if [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)" != "ii " ]; then
            missing+=("$p")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0

    say "installing missing Debian packages: ${missing[*]}"
    local SUDO=()
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 ||
            die "not root and no sudo: install these packages first: ${missing[*]}"
        SUDO=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -qq </dev/null
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}" </dev/null
}

build_and_install() {
    [ -f Makefile ] || die "no Makefile in $STREAM_ROOT"
    local jobs
    jobs="$(nproc 2>/dev/null || echo 2)"
    # CI (CI=true) or STREAM_WERROR=1: the build must be warning-free (-Werror)
    local werror=0
    if [ "${CI:-}" = true ] || [ "${STREAM_WERROR:-0}" = 1 ]; then
        werror=1
    fi
    say "make (PG_CONFIG=$PG_CONFIG, STREAM_WERROR=$werror)"
    make -j"$jobs" PG_CONFIG="$PG_CONFIG" STREAM_WERROR="$werror" </dev/null
    say "make install"
    if [ "$(id -u)" = 0 ]; then
        make install PG_CONFIG="$PG_CONFIG" </dev/null
    else
        sudo make install PG_CONFIG="$PG_CONFIG" </dev/null
    fi
}

if [ "${STREAM_SKIP_PACKAGES:-0}" != 1 ]; then
    install_packages
fi
if [ "${STREAM_SKIP_BUILD:-0}" != 1 ]; then
    build_and_install
fi
# npm packages of the tests, exactly as package-lock.json pins them.
if [ -f package.json ] && command -v npm >/dev/null 2>&1; then
    if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
        say "npm ci"
        npm ci --no-audit --no-fund </dev/null
    fi
fi
# Restart (not just start) so that a freshly installed stream.so is loaded.
bash "$STREAM_ROOT/scripts/cluster.sh" restart
