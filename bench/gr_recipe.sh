#!/usr/bin/env bash
# The generative-retrieval recipe of configs/gr/ end to end, then its results table:
#   bench/gr_recipe.sh            (from the repository root, after scripts/build.sh)
# Steps: (a) teacher, (b) distilled student, (c) AGP-pruned student, (d) QAT student (w4 + 8-bit embeddings/head),
# (e) 10% new documents added in a later run: naive fine-tuning vs replay vs replay + EWC.
# Then one bench_gr row per step (params, bytes, CPU latency per query at batch 1 and 64,
# Hits@1/Hits@10/MRR@10 on the test queries) and the old/new-document Hits@1 of step (e).
# OMP_NUM_THREADS defaults to 1: on a machine shared with other jobs two OpenMP threads per
# process oversubscribe the cores (10x slower steps measured). GR_STEPS="a b c d e" picks steps.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
steps="${GR_STEPS:-a b c d e}"
sculpt="build/bin/sculpt"
train() {
  local t0
  t0=$(date +%s)
  "$sculpt" train "$@" --log-level warn
  echo "  $1 ${*:2}: $(( $(date +%s) - t0 )) s" >&2
}
has() { [[ " $steps " == *" $1 "* ]]; }
start=$(date +%s)
has a && train configs/gr/teacher.yaml
has b && train configs/gr/student.yaml
has c && train configs/gr/prune.yaml
has d && train configs/gr/qat.yaml
replay='{name: replay, buffer: 4000, policy: reservoir, ratio: 1.0}'
if has e; then
  train configs/gr/update_old.yaml run.name=gr_naive_old 'compression=[]'
  train configs/gr/update.yaml run.name=gr_naive incremental.resume_from=runs/gr_naive_old \
    'compression=[]'
  train configs/gr/update_old.yaml run.name=gr_replay_old "compression=[$replay]"
  train configs/gr/update.yaml run.name=gr_replay incremental.resume_from=runs/gr_replay_old \
    "compression=[$replay]"
  train configs/gr/update_old.yaml
  train configs/gr/update.yaml
fi
echo "recipe: $(( $(date +%s) - start )) s, OMP_NUM_THREADS=$OMP_NUM_THREADS, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| step | params | nonzero | bytes | ms/query b1 | ms/query b64 | Hits@1 | Hits@10 | MRR@10 | threads | load |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
build/bin/bench_gr "(a) teacher" configs/gr/teacher.yaml
build/bin/bench_gr "(b) student, distilled" configs/gr/student.yaml
build/bin/bench_gr "(c) + AGP pruned" configs/gr/prune.yaml
build/bin/bench_gr "(d) + QAT w4, emb/head 8 bit (fake-quant, float)" configs/gr/qat.yaml
build/bin/bench_gr "(d) + QAT w4, emb/head 8 bit (integer export)" configs/gr/qat.yaml --quantized
echo
python3 - <<'PY'
import json
print("| (e) update | old Hits@1 before | old Hits@1 after | drop (points) | new Hits@1 |")
print("|---|---|---|---|---|")
for label, run in [("naive fine-tuning", "gr_naive"), ("replay", "gr_replay"),
                   ("replay + EWC", "gr_update")]:
    try:
        c = json.load(open(f"runs/{run}/summary.json"))["continual"]
    except (OSError, KeyError):
        print(f"| {label} | (no run) | | | |")
        continue
    r = c["accuracy_matrix"]
    before, after, new = r[0][0], r[1][0], r[1][1]
    print(f"| {label} | {before:.4f} | {after:.4f} | {100 * (before - after):.1f} | {new:.4f} |")
PY
