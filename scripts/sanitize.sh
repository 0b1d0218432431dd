#!/usr/bin/env bash
# ASan + UBSan over the input readers (config, safetensors, datasets, tokenizers, config.json,
# checkpoints, plugin loading) and their tests, in build-sanitize
# (cmake/SculptSanitizeReaders.cmake). Only those sources are compiled instrumented; the rest
# links from the normal build (BUILD_DIR, default build/), whose libraries and test plugins
# this script builds first.
#   scripts/sanitize.sh [ctest arguments...]        ends with ctest's summary; exit 0 when all pass
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=/dev/null
source "${SCULPT_DEPS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sculpt}/env.sh"
main="${BUILD_DIR:-$root/build}"
dir="${SANITIZE_BUILD_DIR:-$root/build-sanitize}"
jobs="${SCULPT_JOBS:-$(nproc)}"
[ -f "$main/CMakeCache.txt" ] || cmake --preset default -B "$main" >/dev/null
cmake --build "$main" -j "$jobs" --target sculpt_app test_noop test_noop_copy test_no_register \
  test_wrong_version test_group_lasso
if [ ! -f "$dir/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$dir" -G Ninja -DSCULPT_SANITIZE_READERS=ON -DSCULPT_CUDA=OFF \
    -DSCULPT_PCH=OFF -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="" \
    -DSCULPT_MAIN_BUILD="$main" >"$dir.configure.log" 2>&1 \
    || { cat "$dir.configure.log" >&2; echo "sanitize.sh: configure failed" >&2; exit 1; }
fi
cmake --build "$dir" -j "$jobs" --target sculpt_sanitize_tests
export OMP_NUM_THREADS=1
cd "$dir" && ctest --output-on-failure --timeout 900 -j "${SCULPT_TEST_JOBS:-2}" -L sanitize "$@"
