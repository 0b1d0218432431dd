#!/usr/bin/env bash
# QAT step time / FP32 step time (issue 6, target <= 1.3 on CPU): alternated plain and QAT
# (`compression=[{name: quantize}]`) training runs of one thread, `mean_step_s` from each run's
# summary.json; prints every pair, the medians and the load average before and after.
# Usage: bench/qat_step_time.sh DATA_DIR [PAIRS=10] [STEPS=600] [CONFIG=configs/mnist_mlp.yaml] [OVERRIDE='model.hidden=[64]']
#   MLP 784-64-10:  bench/qat_step_time.sh ../shared/data/mnist
#   LeNet-5:        bench/qat_step_time.sh ../shared/data/mnist 4 300 configs/mnist_lenet5.yaml ''
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data=${1:?usage: bench/qat_step_time.sh DATA_DIR [PAIRS] [STEPS] [CONFIG] [OVERRIDE]}
pairs=${2:-10}; steps=${3:-600}; cfg=${4:-configs/mnist_mlp.yaml}; override=${5-'model.hidden=[64]'}
bin=${SCULPT_BIN:-$root/build/bin/sculpt}
out=$(mktemp -d /tmp/qat-step-XXXXXX)
cd "$root"
uptime
for i in $(seq 1 "$pairs"); do
  for m in plain qat; do
    args=(train "$cfg" "data.dir=$data" trainer.max_steps="$steps" trainer.eval_every=0
          "run.output_dir=$out/$m$i" --log-level warn)
    [ -n "$override" ] && args+=("$override")
    [ "$m" = qat ] && args+=('compression=[{name: quantize}]')
    OMP_NUM_THREADS=1 "$bin" "${args[@]}" >/dev/null
  done
done
python3 - "$out" "$pairs" <<'PY'
import json, statistics as st, sys
out, n = sys.argv[1], int(sys.argv[2])
step = lambda m: [json.load(open(f"{out}/{m}{i}/summary.json"))["mean_step_s"] * 1e3 for i in range(1, n + 1)]
p, q = step("plain"), step("qat")
for a, b in zip(p, q):
    print(f"plain {a:.3f} ms  qat {b:.3f} ms  ratio {b / a:.2f}")
print(f"median plain {st.median(p):.3f} ms, median qat {st.median(q):.3f} ms, ratio of medians "
      f"{st.median(q) / st.median(p):.2f}, median of the pair ratios {st.median([b / a for a, b in zip(p, q)]):.2f}")
PY
uptime
rm -rf "$out"
