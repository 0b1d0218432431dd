#!/usr/bin/env bash
# Builds one libFuzzer harness of tests/fuzz/ (clang++-14, ASan + UBSan, in build-fuzz) and runs
# it for SECONDS from its committed seed corpus tests/fuzz/NAME/corpus/. New inputs it finds go
# to build-fuzz/corpus/NAME/ (not into the repository); a crash, leak, timeout or sanitizer
# report leaves its input in build-fuzz/artifacts/NAME/ and exits non-zero.
#   scripts/fuzz.sh NAME SECONDS [libFuzzer options...]    NAME: config safetensors data hf_config tokenizer
#   scripts/fuzz.sh NAME 0 -runs=1000000                   a fixed number of executions instead
# FUZZ_BUILD_DIR overrides build-fuzz; fuzz_data links the main build's libsculpt_core.so, which
# this script builds first (BUILD_DIR, default build/).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ $# -lt 2 ]; then
  echo "usage: scripts/fuzz.sh NAME SECONDS [libFuzzer options]   (NAME: config safetensors data hf_config tokenizer)" >&2
  exit 2
fi
name="$1" seconds="$2"
shift 2
[ -d "$root/tests/fuzz/$name/corpus" ] || { echo "fuzz.sh: no harness '$name' (tests/fuzz/$name/corpus)" >&2; exit 2; }
# shellcheck source=/dev/null
source "${SCULPT_DEPS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sculpt}/env.sh"
cxx="${SCULPT_FUZZ_CXX:-clang++-14}"
dir="${FUZZ_BUILD_DIR:-$root/build-fuzz}"
main="${BUILD_DIR:-$root/build}"
if [ ! -f "$dir/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$dir" -G Ninja -DSCULPT_FUZZ=ON -DSCULPT_CUDA=OFF -DSCULPT_PCH=OFF \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O1" -DCMAKE_CXX_COMPILER="$cxx" \
    -DSCULPT_CORE_LIBRARY="$main/lib/libsculpt_core.so" >"$dir.configure.log" 2>&1 \
    || { cat "$dir.configure.log" >&2; echo "fuzz.sh: configure failed" >&2; exit 1; }
fi
if [ "$name" = data ]; then
  [ -f "$main/CMakeCache.txt" ] || cmake --preset default -B "$main" >/dev/null
  cmake --build "$main" --target sculpt_core
fi
cmake --build "$dir" --target "fuzz_$name"
mkdir -p "$dir/corpus/$name" "$dir/artifacts/$name"
# Leaks are checked; one input may take 10 s and 2.5 GB (LibTorch's libraries alone are ~0.5 GB).
# Allocation stacks of 10 frames and a 64 MB quarantine (ASan's defaults: 30, 256 MB): the
# readers allocate much per input, and the defaults spent a third of the time and 1 GB there.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1:malloc_context_size=10:quarantine_size_mb=64}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export OMP_NUM_THREADS=1
time_opt=()
[ "$seconds" != 0 ] && time_opt=(-max_total_time="$seconds")
cd "$dir"
exec "./fuzz_$name" "${time_opt[@]}" -timeout=10 -rss_limit_mb=2560 \
  -artifact_prefix="$dir/artifacts/$name/" -print_final_stats=1 \
  "$dir/corpus/$name" "$root/tests/fuzz/$name/corpus" "$@"
