#!/usr/bin/env bash
# Quick run of the benchmarks (ctest bench/smoke): a small flood, three
# start-ups, and a tiny run of the IRC benchmark (irc-smoke.sh). Fails only
# when a driver fails (handshake, missing echoes, daemon crash), never for
# a missed target: a smoke run on a busy or sanitizer build says nothing
# about performance.
#   usage: bash smoke.sh BABELFISH BUILD_DIR
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: bash smoke.sh BABELFISH BUILD_DIR" >&2
  exit 2
fi
babelfish=$1
build=$2
bench=$build/tests/bench-component
tmp=$build/tmp
mkdir -p "$tmp"

# Both runs together stay well under 60 s: the flood takes well under a
# second on a Release build, and a few seconds under ASan.
timeout 40 "$bench" --babelfish "$babelfish" --tmp "$tmp" -n 20000 \
  --latency-n 2000
timeout 15 "$bench" --babelfish "$babelfish" --tmp "$tmp" --startup --runs 3
# The IRC transport's benchmark, tiny (irc-smoke.sh).
bash "$(dirname "$0")/irc-smoke.sh" "$babelfish" "$build"
