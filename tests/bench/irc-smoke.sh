#!/usr/bin/env bash
# Quick run of the IRC benchmark (called by smoke.sh, so part of ctest's
# bench/smoke): babelfish only, every scenario at a tiny size, ~10 s on a
# Release build. Fails only when the driver fails (no connection, a join or
# message lost for good, the daemon crashed), never for a missed target.
#   usage: bash irc-smoke.sh BABELFISH BUILD_DIR
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: bash irc-smoke.sh BABELFISH BUILD_DIR" >&2
  exit 2
fi
babelfish=$1
build=$2
bench=$build/tests/bench-irc
tmp=$build/tmp
mkdir -p "$tmp"

timeout 60 "$bench" --babelfish "$babelfish" --tmp "$tmp" \
  --gateways babelfish --plain-users 20 --big-users 5 --fanout-users 5 \
  --fanout-msgs 200 --latency-lines 20 --latency-rate 100 --join-users 50 \
  --idle-s 1 --timeout 10
