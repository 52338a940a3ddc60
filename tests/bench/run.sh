#!/usr/bin/env bash
# The full benchmark on a Release build: builds build-release/ if needed,
# then the flood (1,000,000 stanzas by default) and the start-up runs.
# Extra arguments go to the flood run, e.g. `bash tests/bench/run.sh -n 200000`
# or `--enforce` to exit non-zero when a target is missed.
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
build=${BF_BENCH_BUILD:-$src/build-release}
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target babelfish bench-component >/dev/null

enforce=()
for arg in "$@"; do
  [ "$arg" = --enforce ] && enforce=(--enforce)
done
rc=0
"$build/tests/bench-component" --babelfish "$build/babelfish" "$@" || rc=$?
"$build/tests/bench-component" --babelfish "$build/babelfish" --startup \
  --runs 10 "${enforce[@]}" || { r=$?; [ $rc -eq 0 ] && rc=$r; }
exit $rc
