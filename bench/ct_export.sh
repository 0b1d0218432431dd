#!/usr/bin/env bash
# compressed-tensors export sizes and times (issue 26): bench/hf_make_checkpoints.py's llama
# (55M parameters, vocab 32000 x hidden 512 embedding, untied head) trained one step with a
# quantize pass, then exported with `sculpt export RUN --format hf` (the fp32 reference) and
# `--format compressed-tensors`:
#   w8a8    8-bit per-channel weights, 8-bit inputs            (target <= 0.27x the fp32 hf bytes)
#   w4a16   4-bit weights in groups of 128, float inputs       (target <= 0.15x)
#   s24     2:4 pruning of the decoder layers, then w8a8       (target <= 0.2x)
# Every export runs its verification (the written tensors read back and dequantized equal the
# integer model's, exactly). Then transformers (the venv's, with compressed-tensors) loads each
# folder with AutoModelForCausalLM.from_pretrained on the CPU: no tensor left unread or missing,
# every module export.json lists as quantized (the token table included) carries its scheme
# (or, with a 4-bit token table, the folder loads dequantized: quantization_config.dequantize),
# and its logits on fixed ids are printed against the fp32 hf export's (the run's float weights:
# they differ by the quantization).
# Then tests/hf/check_ct_export.py (the CI test's verifier) compares transformers' logits with
# Sculpt's integer model's (build/bin/bench_ct_reference writes those): within one output step.
# Prints a table: model.safetensors bytes, ratio to the fp32 export, export wall time (best of
# RUNS, default 3, each with verification) and the load average.
# usage: bench/ct_export.sh [OUT=build/bench-ct]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build/bench-ct}
source /root/.cache/sculpt/env.sh 2>/dev/null || true
py=${SCULPT_PYTHON:-$HOME/.cache/sculpt/venv/bin/python}
sculpt=${SCULPT:-$root/build/bin/sculpt}
[ -x "$sculpt" ] || { echo "no $sculpt: ninja -C build sculpt" >&2; exit 2; }
ref=${REF:-$root/build/bin/bench_ct_reference}
[ -x "$ref" ] || { echo "no $ref: ninja -C build bench_ct_reference" >&2; exit 2; }
runs=${RUNS:-3}
llama=$root/build/bench-hf/llama_bench
[ -d "$llama" ] || "$py" "$root/bench/hf_make_checkpoints.py" "$root/build/bench-hf"
mkdir -p "$out"
[ -f "$out/tokens.bin" ] || "$py" -c "import numpy as np; np.random.default_rng(0).integers(4, 32000, 8192).astype('<u2').tofile('$out/tokens.bin')"
uptime

q8="{name: quantize, weight_bits: 8, act_bits: 8, weight_granularity: per_channel, verify: false}"
q4="{name: quantize, weight_bits: 4, act_bits: 0, weight_granularity: per_group, group_size: 128, verify: false}"
p24="{name: prune, include: ['layer.*'], pattern: 'n:m', n: 2, m: 4, schedule: one_shot, start: 1}"
declare -A recipe=([w8a8]="  - $q8" [w4a16]="  - $q4" [s24]="  - $p24
  - $q8")
for tag in w8a8 w4a16 s24; do
  d=$out/$tag
  if [ ! -f "$d/run/quantized/manifest.json" ] || [ -n "${RETRAIN:-}" ]; then
    rm -rf "$d"; mkdir -p "$d"
    cat > "$d/run.yaml" <<EOF
run: {name: $tag, device: cpu, seed: 0, output_dir: '$d/run'}
model: {name: hf, path: '$llama'}
data: {name: tokens, file: '$out/tokens.bin', seq_len: 32, batch_size: 2, val_fraction: 0.01, prefetch: 0}
task: {name: language_model}
optimizer: {name: sgd, lr: 1.0e-6}
trainer: {max_steps: 2, log_every: 1, eval_every: 0, tensorboard: false}
compression:
${recipe[$tag]}
EOF
    "$sculpt" train "$d/run.yaml" --log-level warn
  fi
done

"$py" - "$sculpt" "$out" "$runs" "$ref" "$root/tests/hf/check_ct_export.py" <<'PY'
import json, os, subprocess, sys, time
sculpt, out, runs, ref_bin, check = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
targets = {"w8a8": 0.27, "w4a16": 0.15, "s24": 0.2}

def export(run, fmt):
    best = None
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sculpt, "export", run, "--format", fmt, "--force", "--log-level", "warn"],
                       check=True, stdout=subprocess.DEVNULL)
        s = time.perf_counter() - t
        best = s if best is None else min(best, s)
    return best

rows = []
for tag in ("w8a8", "w4a16", "s24"):
    run = os.path.join(out, tag, "run")
    t_hf = export(run, "hf")
    hf = os.path.getsize(os.path.join(run, "export-hf", "model.safetensors"))
    t_ct = export(run, "compressed-tensors")
    d = os.path.join(run, "export-compressed-tensors")
    ct = os.path.getsize(os.path.join(d, "model.safetensors"))
    info = json.load(open(os.path.join(d, "export.json")))
    rows.append((tag, hf, t_hf, ct, t_ct, info))
print(f"load average after: {os.getloadavg()}")
print("| run | hf fp32 bytes | hf s | compressed-tensors bytes | / fp32 hf | target | ct s | scheme | format |")
print("|---|---|---|---|---|---|---|---|---|")
for tag, hf, t_hf, ct, t_ct, info in rows:
    r = ct / hf
    ok = "ok" if r <= targets[tag] else "MISSED"
    print(f"| {tag} | {hf:,} | {t_hf:.2f} | {ct:,} | {r:.4f} | <= {targets[tag]} {ok} | {t_ct:.2f} | "
          f"{info['scheme']} | {info['quantization_format']} |")
    if info.get("sparsity"):
        print(f"  {tag} sparsity: {json.dumps(info['sparsity'])}")

import torch, transformers
transformers.logging.set_verbosity_error()
torch.manual_seed(0)
ids = torch.randint(4, 32000, (2, 24))
for tag, hf, t_hf, ct, t_ct, info in rows:
    run = os.path.join(out, tag, "run")
    d = os.path.join(run, "export-compressed-tensors")
    model, loading = transformers.AutoModelForCausalLM.from_pretrained(d, output_loading_info=True)
    unread = {k: v for k, v in loading.items() if v}
    modules = dict(model.named_modules())
    dequantized = json.load(open(os.path.join(d, "config.json")))["quantization_config"].get("dequantize")
    unquantized = [] if dequantized else [n for n in info["quantized_layers"]
                   if getattr(modules.get(n), "quantization_scheme", None) is None]
    ref = transformers.AutoModelForCausalLM.from_pretrained(os.path.join(run, "export-hf"))
    with torch.no_grad():
        a, b = model(ids).logits, ref(ids).logits
    step = ((b.max() - b.min()) / 255).item()
    print(f"  {tag}: transformers {transformers.__version__} loads it ({'nothing unread' if not unread else unread}; "
          f"{len(info['quantized_layers']) - len(unquantized)} of {len(info['quantized_layers'])} modules "
          f"quantized{', not: ' + str(unquantized) if unquantized else ''}"
          f"{', loaded dequantized (quantization_config.dequantize: a packed token table)' if dequantized else ''}); logits against the fp32 hf export's: "
          f"max |diff| {(a - b).abs().max().item():.3g} (one output step {step:.3g})")
    del model, ref
    # against Sculpt's integer model, as the CI test checks
    reference = os.path.join(run, "ct_check.safetensors")
    subprocess.run([ref_bin, run, reference, "32000"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    r = subprocess.run([sys.executable, check, d, reference], capture_output=True, text=True)
    print(f"  {tag}: check_ct_export.py: exit {r.returncode}: {r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-400:]}")
    if info["scheme"].endswith("A8"):
        # The noise floor of a static-input W8A8 model: transformers against itself in float64
        # (an input within rounding of a grid midpoint lands on the other side; 8 layers deep).
        from safetensors.torch import load_file
        ref_ids = load_file(reference)["input_ids"]
        mask = (ref_ids >= 0).long()
        ids2 = torch.where(mask.bool(), ref_ids, torch.zeros_like(ref_ids))
        m = transformers.AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager").eval()
        with torch.no_grad():
            l32 = m(input_ids=ids2, attention_mask=mask).logits
            l64 = m.double()(input_ids=ids2, attention_mask=mask).logits.float()
        print(f"  {tag}: transformers float32 against float64 on the same ids: max |diff| "
              f"{((l32 - l64).abs() * mask.unsqueeze(-1)).max().item():.3g}")
        del m
PY
