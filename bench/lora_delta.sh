#!/usr/bin/env bash
# The version delta of a LoRA update on the GR teacher's model (configs/gr/teacher.yaml:
# transformer_seq2seq 6 + 6 layers, d_model 64, ff 256; 774,260 parameters, 3,097,040 bytes
# fp32): one short update (STEPS optimizer steps, default 20, of the teacher's data) under the
# incremental trainer with incremental.versions, for each adapter variant below; prints version
# 2's delta bytes (delta.safetensors, header included), the full weights' bytes (every tensor
# of the merged model) and their ratio, the tensors the delta holds by kind, and whether
# `sculpt versions rollback 2` reproduces the run's merged model.safetensors bit for bit. The
# ratio does not depend on the weights' values (the base is the teacher's random init, not a
# trained teacher), only on what trains: the issue's target is <= 10% of a full checkpoint.
#   linear r8     lora rank 8 on every Linear (attention q, k, v, o, cross-attention, fc1, fc2)
#   linear r4     the same at rank 4
#   qv r8         rank 8 on the attention q and v projections only (PEFT's default for T5)
#   all r8        rank 8 on every compressible layer: the Linears, the token table and the head
#   linear r8 +   rank 8 on the Linears with every bias, norm and position table training too
#                 (bias: all, modules_to_save: norms and positions): what the delta held before
#                 lora froze the rest of the model (17% of the weights on the test model)
# usage: bench/lora_delta.sh [OUT=build/bench-lora]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build/bench-lora}
source /root/.cache/sculpt/env.sh 2>/dev/null || true
sculpt=${SCULPT:-$root/build/bin/sculpt}
[ -x "$sculpt" ] || { echo "no $sculpt: ninja -C build sculpt" >&2; exit 2; }
steps=${STEPS:-20}
py=${SCULPT_PYTHON:-python3}
linear="'.*(attn\\.[qkvo]|fc[12])'"
declare -a names=("linear r8" "linear r4" "qv r8" "all r8" "linear r8 +")
declare -a items=(
  "{name: lora, rank: 8, alpha: 16, include: [$linear]}"
  "{name: lora, rank: 4, alpha: 8, include: [$linear]}"
  "{name: lora, rank: 8, alpha: 16, include: ['.*attn\\.[qv]']}"
  "{name: lora, rank: 8, alpha: 16}"
  "{name: lora, rank: 8, alpha: 16, include: [$linear], bias: all, modules_to_save: ['.*\\.ln.*', '.*_norm.*', 'head\\.ln', 'embed\\..*positions']}"
)
printf '| variant | delta bytes | full weights bytes | ratio | delta tensors | rollback |\n|---|---|---|---|---|---|\n'
for i in "${!names[@]}"; do
  dir=$out/v$i
  rm -rf "$dir"
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$sculpt" train "$root/configs/gr/teacher.yaml" \
    "run.output_dir=$dir" trainer.name=incremental trainer.epochs=1 "trainer.max_steps=$steps" \
    incremental.versions=true incremental.metric=hits@1 incremental.eval_on=test \
    "increments=[{name: update}]" data.eval_docs=20 data.test_queries=1 \
    "compression=[${items[$i]}]" --log-level warn
  "$sculpt" versions "$dir/versions" rollback 2 --out "$dir/rolled" > /dev/null
  "$py" - "$dir" "${names[$i]}" <<'PY'
import json, sys, hashlib, struct
d, name = sys.argv[1], sys.argv[2]
v = json.load(open(f"{d}/versions/v2/version.json"))
kinds = {}
for t in v["delta"]["tensors"]:
    k = ("adapter" if ".wt_lora." in t else "position" if "positions" in t else
         "norm" if (".ln" in t or "norm" in t) else "bias" if t.endswith("bias") else "weight")
    kinds[k] = kinds.get(k, 0) + 1
def tensors(path):  # name -> bytes of each tensor, header aside
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n]); h.pop("__metadata__", None)
    return {k: raw[8 + n + e["data_offsets"][0]:8 + n + e["data_offsets"][1]] for k, e in h.items()}
same = tensors(f"{d}/rolled/model.safetensors") == tensors(f"{d}/model.safetensors")
dl = v["delta"]
print(f"| {name} | {dl['bytes']:,} | {dl['full_bytes']:,} | {dl['ratio']:.4f} | "
      + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
      + f" | {'bit-identical' if same else 'DIFFERS'} |")
PY
done
