#!/usr/bin/env bash
# Fuzz the KPL decoder (src/streams/kpl.c) outside the server: test/kpl/fuzz_kpl.c
# built with AddressSanitizer and UndefinedBehaviorSanitizer, every input in a
# heap block of exactly its size, so that any read past an input, any overflow
# or any undefined shift fails the run.  Random and mutated aggregates, random
# protobuf, deep nesting, index aliasing (see the program's header).
#
#   bash test/scripts/75_kpl_fuzz.sh
#
# STREAM_KPL_SEED (default: random, printed), STREAM_KPL_ITERATIONS (default
# 4000); STREAM_KPL_VALGRIND=1 also runs an uninstrumented build under valgrind
# memcheck (--error-exitcode=1, a tenth of the iterations).  Needs a C compiler
# with the sanitizers (gcc or clang) and the server headers (pg_config).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/env.sh
source scripts/env.sh

SEED="${STREAM_KPL_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
ITER="${STREAM_KPL_ITERATIONS:-4000}"
INC="$("$PG_CONFIG" --includedir-server)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
SRC=(src/streams/kpl.c src/md5.c test/kpl/fuzz_kpl.c)
CFLAGS=(-std=gnu99 -g -Wall -Wextra -Wno-unused-parameter -Werror -I src -I "$INC")

echo "[75_kpl_fuzz] seed $SEED, $ITER iterations (STREAM_KPL_SEED=$SEED to repeat)"
cc "${CFLAGS[@]}" -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
    "${SRC[@]}" -o "$WORK/fuzz_kpl"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$WORK/fuzz_kpl" "$SEED" "$ITER"

if [ "${STREAM_KPL_VALGRIND:-0}" = 1 ]; then
    cc "${CFLAGS[@]}" -O0 "${SRC[@]}" -o "$WORK/fuzz_kpl_plain"
    valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
        "$WORK/fuzz_kpl_plain" "$SEED" "$(( ITER / 10 ))"
    echo "[75_kpl_fuzz] valgrind: no errors"
fi
echo "[75_kpl_fuzz] OK"
