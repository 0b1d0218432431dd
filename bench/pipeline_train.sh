#!/usr/bin/env bash
# Pipeline bubble on a real model: configs/pipeline_vit.yaml (a 6-layer vision transformer cut
# into 2 stages, 2 processes over Gloo, one thread each) for m = 1, 2, 4, 8, 16 micro-batches,
# under 1F1B and GPipe. Each stage's idle fraction (time blocked waiting for its neighbour over
# the training steps, from summary.json's pipeline.per_stage) against the theory
# (p - 1) / (m + p - 1), and the step time against one process training the whole model.
# Stages are balanced by measured time; batches of BATCH rows (default 512), so a micro-batch
# keeps enough rows for compute, not the transport's latency, to dominate.
#   bench/pipeline_train.sh [steps]        (default 30 steps per run; BATCH=512)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/build/bin"
steps="${1:-30}"
batch="${BATCH:-512}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cfg="$root/configs/pipeline_vit.yaml"
common="trainer.max_steps=$steps trainer.final_train_eval=false data.val_fraction=0.05 data.batch_size=$batch distributed.pipeline.balance=time --log-level warn"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; $steps steps of $batch rows per run"
OMP_NUM_THREADS=1 "$bin/sculpt" train "$cfg" distributed.pipeline.stages=1 $common \
  run.output_dir="$out/single" >/dev/null 2>&1
single_ms=$(python3 -c "import json;print(1000*json.load(open('$out/single/summary.json'))['mean_step_s'])")
echo "one process (1 thread), whole model: $(printf %.1f "$single_ms") ms/step"
echo
echo "| schedule | m | theory | stage 0 idle | stage 1 idle | worst gap (pp) | peak held (stage 0) | ms/step | vs one process |"
echo "|---|---|---|---|---|---|---|---|---|"
for schedule in 1f1b gpipe; do
  for m in 1 2 4 8 16; do
    OMP_NUM_THREADS=1 "$bin/sculpt-run" --standalone --nproc-per-node 2 -- "$bin/sculpt" train \
      "$cfg" distributed.pipeline.microbatches=$m distributed.pipeline.schedule=$schedule \
      $common run.output_dir="$out/$schedule$m" >/dev/null 2>&1
    python3 - "$out/$schedule$m/summary.json" "$schedule" "$m" "$single_ms" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
p = s["pipeline"]
theory = p["theoretical_bubble"]
idle = [st["bubble"] for st in p["per_stage"]]
gap = max(abs(b - theory) for b in idle) * 100
ms = 1000 * s["mean_step_s"]
print(f"| {sys.argv[2]} | {sys.argv[3]} | {theory:.3f} | {idle[0]:.3f} | {idle[1]:.3f} | {gap:.1f} | "
      f"{p['per_stage'][0]['peak_live_microbatches']} | {ms:.1f} | {ms / float(sys.argv[4]):.2f}x |")
PY
  done
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
