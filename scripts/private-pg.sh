#!/usr/bin/env bash
# Make a relocated private copy of Debian's PostgreSQL 15 (server, PGXS,
# headers, installed extensions) under DIR, so that several checkouts can
# `make install` and run their clusters side by side without sharing
# /usr/lib/postgresql/15/lib.  PostgreSQL finds its lib and share
# directories relative to its binaries, so the copy works where it lies.
#
#   bash scripts/private-pg.sh /opt/pg-mine
#   export STREAM_PG_BIN=/opt/pg-mine/usr/lib/postgresql/15/bin STREAM_PGPORT=5510
#   bash scripts/test.sh
set -euo pipefail
DIR="${1:?usage: private-pg.sh DIR}"
for d in /usr/lib/postgresql/15 /usr/share/postgresql/15 /usr/include/postgresql; do
    [ -d "$d" ] || { echo "missing $d: run scripts/setup.sh first" >&2; exit 1; }
    mkdir -p "$DIR$(dirname "$d")"
    rm -rf "${DIR:?}$d"
    cp -a "$d" "$DIR$d"
done
echo "STREAM_PG_BIN=$DIR/usr/lib/postgresql/15/bin"
