#!/usr/bin/env bash
# The include graph of src/ has no cycle, and every arrow points down the
# layers of scripts/include_graph.py (streams never include the runtime,
# delivery or the workers; leaves include nothing of the extension).  A new
# #include that points up, or a new top-level file in no layer, fails here.
# Then the checker itself must catch a planted upward include.
set -u
cd "$(dirname "$0")/../.."
out=$(python3 scripts/include_graph.py --check) || { echo "$out"; echo "06_include_graph: FAILED"; exit 1; }
echo "$out" | grep -E '^(unit cycles|module cycles|layer violations)'
# self-test on a copy with streams/seqno.h including runtime/runtime.h
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cp -r src "$tmp/src"
sed -i 's|#include "stream.h"|#include "stream.h"\n#include "runtime/runtime.h"|' "$tmp/src/streams/seqno.h"
if python3 scripts/include_graph.py --check --src "$tmp/src" >/dev/null; then
    echo "06_include_graph: FAILED (an upward include was not caught)"; exit 1
fi
echo "06_include_graph: OK"
