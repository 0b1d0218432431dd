#!/usr/bin/env bash
# Configures (once) and builds Sculpt. Usage: scripts/build.sh [preset]   (default, asan, cuda)
# BUILD_DIR overrides the build folder; SCULPT_JOBS the parallel jobs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
# shellcheck source=/dev/null
source "${SCULPT_DEPS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sculpt}/env.sh"
preset="${1:-default}"
case "$preset" in
  default) dir="build" ;;
  *) dir="build-$preset" ;;
esac
dir="${BUILD_DIR:-$root/$dir}"
cd "$root"
if [ ! -f "$dir/CMakeCache.txt" ]; then
  cmake --preset "$preset" -B "$dir" >"$root/.cmake-configure.log" 2>&1 || {
    cat "$root/.cmake-configure.log" >&2
    echo "build.sh: cmake configure failed (log above); retry with: cmake --preset $preset -B $dir" >&2
    exit 1
  }
fi
cmake --build "$dir" -j "${SCULPT_JOBS:-$(nproc)}"
