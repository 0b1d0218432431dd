#!/usr/bin/env bash
# On a machine with an NVIDIA GPU (the device tool's H200): build with CUDA for sm_90 (+PTX)
# against the torch that python3 there has, run the `cuda` tests, the Python interop check of the
# op library and the kernel benchmarks, and write a short table to $OUT/gpu_check.md (logs beside).
#   scripts/gpu_check.sh [all|build|test|bench|--dry-run]     (default all)
# build, test and bench can run as separate device calls (build-cuda/ stays on a warm machine).
# --dry-run (on any machine): configure only, in build-gpucheck-dry/, and print where each
# dependency was found; no compile, no GPU needed.
# Needs: nvcc, cmake, ninja, python3 with torch; yaml-cpp, spdlog, fmt, CLI11, Catch2,
# nlohmann-json and zlib from .gpu-deps/root (made on a machine with apt by
# scripts/fetch_gpu_deps.sh, carried along: device run with carry [".gpu-deps"]) or the system.
set -uo pipefail
stage="${1:-all}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${OUT:-$root/build-cuda/gpu-check}"
mkdir -p "$out"
python="${SCULPT_PYTHON:-python3}"
prefix=$("$python" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)') || {
  echo "gpu_check.sh: $python cannot import torch" >&2; exit 1; }
deps="$root/.gpu-deps/root/usr"
prefixes="$prefix"
if [ -d "$deps" ]; then
  prefixes="$prefix;$deps"
  export LD_LIBRARY_PATH="$deps/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
build="$root/build-cuda"
[ "$stage" = "--dry-run" ] && build="$root/build-gpucheck-dry"
cd "$root" || exit 1

configure() {
  [ -f "$build/CMakeCache.txt" ] && return 0
  cmake --preset cuda -B "$build" -DCMAKE_PREFIX_PATH="$prefixes" \
    -DSCULPT_TEST_PYTHON="$(command -v "$python")" >"$out/configure.log" 2>&1 || {
    tail -30 "$out/configure.log"; return 1; }
}

if [ "$stage" = "--dry-run" ]; then
  rm -rf "$build"
  configure || exit 1
  grep -E "^(yaml-cpp|spdlog|fmt|CLI11|Catch2|nlohmann_json)_DIR|^ZLIB_INCLUDE_DIR|^Torch_DIR|^SCULPT_CUDA" \
    "$build/CMakeCache.txt"
  grep -m1 "CUDA kernels" "$out/configure.log"
  echo "gpu_check.sh --dry-run: configured $build (nothing built)"
  exit 0
fi

if [ "$stage" = all ] || [ "$stage" = build ]; then
  {
    echo "# gpu_check $(date -u +%FT%TZ)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader 2>&1 | sed 's/^/GPU: /'
    nvcc --version | tail -1
    "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
  } | tee "$out/gpu_check.md"
  t0=$(date +%s)
  configure || exit 1
  cmake --build "$build" -j "$(nproc)" --target sculpt_cuda_tests bench_kernels sculpt_kernels sculpt \
    >"$out/build.log" 2>&1 || { grep -m20 -E "error|FAILED" "$out/build.log"; exit 1; }
  echo "build: $(( $(date +%s) - t0 )) s" | tee -a "$out/gpu_check.md"
fi

rc=0
if [ "$stage" = all ] || [ "$stage" = test ]; then
  (cd "$build" && ctest -L cuda --output-on-failure --output-junit "$out/cuda-junit.xml" \
     >"$out/ctest-cuda.log" 2>&1)
  rc=$?
  "$python" - "$out/cuda-junit.xml" <<'PY' | tee -a "$out/gpu_check.md"
import sys, xml.etree.ElementTree as ET
print("\n| test | status | time (s) |\n|---|---|---|")
try:
    for t in ET.parse(sys.argv[1]).getroot().iter("testcase"):
        print(f"| {t.get('name')} | {t.get('status')} | {t.get('time')} |")
except Exception as e:
    print(f"| (no results: {e}) | | |")
PY
  echo | tee -a "$out/gpu_check.md"
  "$python" tests/python/kernels_ops.py "$build/lib/libsculpt_kernels.so" 2>&1 | tee -a "$out/gpu_check.md"
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
  # One DDP step with NCCL at world size 1 (a real ProcessGroupNCCL over a TCPStore).
  if RANK=0 LOCAL_RANK=0 WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=29555 \
     "$build/bin/sculpt" train configs/quickstart.yaml run.device=cuda distributed.backend=nccl \
     trainer.max_steps=1 run.output_dir="$out/ddp-nccl" >"$out/ddp-nccl.log" 2>&1 &&
     grep -q "nccl backend" "$out/ddp-nccl.log"; then
    echo "DDP step with NCCL at world size 1: ok" | tee -a "$out/gpu_check.md"
  else
    echo "DDP step with NCCL at world size 1: FAILED (tail of ddp-nccl.log below)" | tee -a "$out/gpu_check.md"
    tail -20 "$out/ddp-nccl.log" | tee -a "$out/gpu_check.md"
    rc=1
  fi
fi

if [ "$stage" = all ] || [ "$stage" = bench ]; then
  {
    echo; echo "## bench_kernels (C++ and the Python side)"
    "$build/bin/bench_kernels" all --device cuda --python "$(command -v "$python")"
    echo; echo "## bench_kernels bsr-crossover (the CUDA rows of the dispatcher's table)"
    "$build/bin/bench_kernels" bsr-crossover --device cuda --python none
  } 2>&1 | tee "$out/bench.md" | tee -a "$out/gpu_check.md"
fi
exit $rc
