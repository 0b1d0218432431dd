#!/usr/bin/env bash
# On a machine with an NVIDIA GPU (the device tool's H200): build with CUDA for sm_90 (+PTX)
# against the torch that python3 there has, run the `cuda` tests (and the kernel benchmarks
# once they exist), and write a short table to $OUT/gpu_check.md.
# Needs: nvcc, cmake, ninja, python3 with torch; the other libraries from .gpu-deps/ (made here
# by scripts/fetch_gpu_deps.sh and carried along) or from the system.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${OUT:-$root/build-cuda/gpu-check}"
mkdir -p "$out"
python="${SCULPT_PYTHON:-python3}"
prefix=$("$python" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)') || {
  echo "gpu_check.sh: $python cannot import torch" >&2; exit 1; }
deps="$root/.gpu-deps/root/usr"
extra=()
if [ -d "$deps" ]; then
  extra+=("-DCMAKE_PREFIX_PATH=$prefix;$deps" "-DCMAKE_CXX_FLAGS=-isystem $deps/include")
  export LD_LIBRARY_PATH="$deps/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
else
  extra+=("-DCMAKE_PREFIX_PATH=$prefix")
fi
{
  echo "# gpu_check $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/GPU: /'
  nvcc --version | tail -1
  "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
} | tee "$out/gpu_check.md"
cd "$root"
t0=$(date +%s)
cmake --preset cuda -B build-cuda -DSCULPT_TEST_PYTHON="$(command -v "$python")" "${extra[@]}" \
  >"$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
cmake --build build-cuda -j "$(nproc)" >"$out/build.log" 2>&1 || { grep -m20 -E "error|FAILED" "$out/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s" | tee -a "$out/gpu_check.md"
(cd build-cuda && ctest -L cuda --output-on-failure --output-junit "$out/cuda-junit.xml" >"$out/ctest-cuda.log" 2>&1)
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
# One DDP step with NCCL at world size 1 (a real ProcessGroupNCCL over a TCPStore).
ddp_dir="$out/ddp-nccl"
if RANK=0 LOCAL_RANK=0 WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=29555 \
   build-cuda/bin/sculpt train configs/quickstart.yaml run.device=cuda distributed.backend=nccl \
   trainer.max_steps=1 run.output_dir="$ddp_dir" >"$out/ddp-nccl.log" 2>&1 &&
   grep -q "nccl backend" "$out/ddp-nccl.log"; then
  echo "DDP step with NCCL at world size 1: ok" | tee -a "$out/gpu_check.md"
else
  echo "DDP step with NCCL at world size 1: FAILED (tail of $out/ddp-nccl.log below)" | tee -a "$out/gpu_check.md"
  tail -20 "$out/ddp-nccl.log" | tee -a "$out/gpu_check.md"
  rc=1
fi
# Kernel benchmarks (bench/) append their tables here once they exist.
for b in build-cuda/bin/bench_*; do
  [ -x "$b" ] || continue
  echo; echo "## $(basename "$b")"; "$b" --device cuda
done 2>&1 | tee -a "$out/gpu_check.md"
exit $rc
