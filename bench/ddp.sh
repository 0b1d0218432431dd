#!/usr/bin/env bash
# The DDP benchmark and its PyTorch reference in one run: bash bench/ddp.sh [steps]
# (after scripts/build.sh; the venv's python from scripts/setup.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${SCULPT_PYTHON:-${SCULPT_DEPS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sculpt}/venv/bin/python}"
steps="${1:-60}"
echo "## Sculpt (bench_ddp)"
OMP_NUM_THREADS=1 "$root/build/bin/bench_ddp" "$steps"
echo
echo "## PyTorch (bench/ddp_ref.py), same models and batches"
OMP_NUM_THREADS=1 "$python" "$root/bench/ddp_ref.py" "$steps"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
