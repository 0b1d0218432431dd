#!/usr/bin/env bash
# The combined recipe of issue 7 on MNIST LeNet-300-100: AGP to 90% unstructured sparsity with
# int8 QAT in the same run, against the dense FP32 model (same seed, steps and optimizer). The
# quantized export stores each pruned layer as a bitmask + its non-zero int8 values.
#   bench/prune_quant_mnist.sh [mnist_dir]     (default ../shared/data/mnist; 1 thread)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="${1:-$root/../shared/data/mnist}"
out="${OUT:-/tmp/prune_quant_mnist}"
bin="$root/build/bin/sculpt"
mkdir -p "$out"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
sed '/^compression:/,$d' "$root/configs/mnist_prune_agp.yaml" >"$out/dense.yaml"
cat >"$out/combined.yaml" <<YAML
extends: $root/configs/mnist_prune_agp.yaml
compression:
  - {name: prune, pattern: unstructured, scorer: magnitude, schedule: agp, sparsity: 0.9,
     unit: epochs, start: 1, end: 8, every: 0.25, group: all, min_sparsity: 0.5,
     max_sparsity: 0.97}
  - {name: quantize, warmup: 8e, freeze_observers_at: 11e}
YAML
for run in dense combined; do
  "$bin" train "$out/$run.yaml" data.dir="$data" run.output_dir="$out/$run" --log-level warn
done
python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
def summary(run): return json.load(open(f"{out}/{run}/summary.json"))
d, c = summary("dense"), summary("combined")
err = lambda s: 100 * (1 - s["final"]["test"]["accuracy"])
q = next(p["summary"] for p in c["compression"] if p["pass"] == "quantize")
p = next(p["summary"] for p in c["compression"] if p["pass"] == "prune")
manifest = json.load(open(f"{out}/combined/quantized/manifest.json"))
fp32_file = os.path.getsize(f"{out}/dense/model.safetensors")
print("| run | test error | stored model | vs FP32 file |")
print("|---|---|---|---|")
print(f"| dense FP32 | {err(d):.2f}% | {fp32_file:,} bytes (model.safetensors) | 1× |")
print(f"| AGP 90% + int8 QAT | {err(c):.2f}% ({err(c) - err(d):+.2f} pt) | {manifest['bytes']:,} bytes "
      f"(quantized/, bitmask + int8 values) | {fp32_file / manifest['bytes']:.1f}× smaller |")
print()
print("sparsity:", p.get("sparsity"), "; export verified, max diff", q.get("verify_max_abs_diff"))
for name, l in manifest["layers"].items():
    print(f"  {name}: {l['shape']} {l['packed']}" + (f", bitmask, {l['sparse']['nnz']} values" if "sparse" in l else ", dense"))
PY
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
