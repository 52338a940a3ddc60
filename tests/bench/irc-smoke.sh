#!/usr/bin/env bash
# Quick run of the IRC benchmark (called by smoke.sh, so part of ctest's
# bench/smoke): babelfish only, every scenario at a tiny size, ~10 s on a
# Release build, then a join burst through a small XMPP write queue. Fails
# only when the driver fails (no connection, a join or message lost for
# good, the daemon crashed), never for a missed target.
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

# Back-pressure: every join at once through a 64 KiB XMPP write queue; the
# IRC reads pause while it is congested, so no self-presence is dropped
# (a lost one stalls the run and fails it).
timeout 60 "$bench" --babelfish "$babelfish" --tmp "$tmp" \
  --gateways babelfish --scenarios big --big-users 20 --big-window 0 \
  --write-queue-max 65536 --timeout 10
