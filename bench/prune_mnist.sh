#!/usr/bin/env bash
# Pruning on MNIST (issue 7 targets): dense vs pruned LeNet-300-100 and LeNet-5, same seed, steps
# and optimizer. Writes runs under $OUT (default /tmp/prune_mnist) and prints a markdown table.
#   bench/prune_mnist.sh [mnist_dir]        (default ../shared/data/mnist; 1 thread)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="${1:-$root/../shared/data/mnist}"
out="${OUT:-/tmp/prune_mnist}"
bin="$root/build/bin/sculpt"
mkdir -p "$out"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# The LeNet-5 settings of every LeNet-5 row (the dense reference without compression:).
lenet5_head='run: {seed: 0}
data: {name: mnist, batch_size: 64, val_fraction: 0.05}
model: {name: lenet5}
optimizer: {name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 0.0001}
scheduler: {name: cosine, warmup_steps: 200}
trainer: {epochs: 12, log_every: 200}'
sed '/^compression:/,$d' "$root/configs/mnist_prune_agp.yaml" >"$out/mlp_dense.yaml"
cp "$root/configs/mnist_prune_agp.yaml" "$out/mlp_agp92.yaml"
echo "$lenet5_head" >"$out/lenet5_dense.yaml"
cat >"$out/lenet5_agp92.yaml" <<YAML
$lenet5_head
compression:
  - {name: prune, pattern: unstructured, schedule: agp, sparsity: 0.92, unit: epochs, start: 1,
     end: 8, every: 0.25, group: all, min_sparsity: 0.3, max_sparsity: 0.97,
     overrides: [{layers: 'conv1.*', max_sparsity: 0.5}]}
YAML
cat >"$out/lenet5_block4_75.yaml" <<YAML
$lenet5_head
compression:
  - {name: prune, pattern: block, block: 4, schedule: agp, sparsity: 0.75, unit: epochs,
     start: 1, end: 8, every: 0.25, group: all, min_sparsity: 0.3, max_sparsity: 0.97,
     overrides: [{layers: 'conv1.*', max_sparsity: 0.5}]}
YAML
cp "$root/configs/mnist_prune_channels.yaml" "$out/lenet5_channels50.yaml"
# Han et al.'s LeNet-5 is Caffe's (20/50 filters, 500 hidden, 431k weights): the same schedule.
for name in lenet5_dense lenet5_agp92; do
  sed 's/model: {name: lenet5}/model: {name: lenet5, variant: caffe}/' "$out/$name.yaml" \
    >"$out/caffe_${name#lenet5_}.yaml"
done
runs="mlp_dense mlp_agp92 lenet5_dense lenet5_agp92 lenet5_block4_75 lenet5_channels50 caffe_dense caffe_agp92"
for name in $runs; do
  [ -f "$out/$name/summary.json" ] && continue
  "$bin" train "$out/$name.yaml" data.dir="$data" run.output_dir="$out/$name" --log-level warn
done
"${SCULPT_PYTHON:-python3}" - "$out" <<'PY'
import json, sys, os
out = sys.argv[1]
print("| run | test error % | sparsity | remaining weights | params in file | time (s) |")
print("|---|---|---|---|---|---|")
for name in ["mlp_dense", "mlp_agp92", "lenet5_dense", "lenet5_agp92", "lenet5_block4_75",
             "lenet5_channels50", "caffe_dense", "caffe_agp92"]:
    s = json.load(open(os.path.join(out, name, "summary.json")))
    err = 100 * (1 - s["final"]["test"]["accuracy"])
    c = s.get("compression", [{}])[0].get("summary", {})
    sp = c.get("sparsity", 0.0)
    rem = c.get("remaining_params", None)
    print(f"| {name} | {err:.2f} | {sp:.3f} | {'' if rem is None else int(round(rem))} | "
          f"{s['model']['params']} | {s['time_s']:.0f} |")
PY
