#!/usr/bin/env bash
# Export time of a 124M-parameter model in every format (issue 26: <= 10 s on this machine):
#   GPT-2 124M (bench/hf_make_checkpoints.py's gpt2_124m, tied head)  hf, onnx (float32), onnx
#       (QDQ int8 of a W8A8 run: 8-bit per-channel weights, 8-bit inputs)
#   llama 124M (hidden 768, 12 layers, 12 heads / 4 key-value heads, FFN 2048, vocab 32000,
#       untied head: 124.3M parameters; GPT-2's Conv1D layers cannot be compressed-tensors)
#       compressed-tensors W8A8 and W4A16 (4-bit, groups of 128), hf
# each run trained one step first (sculpt train, SGD, lr 1e-6) with its quantize pass, then
# `sculpt export RUN --format F --force`, with its verification (the default) and with
# --no-verify: wall time of the whole process, best of RUNS (default 3). The load average is
# printed before and after; `--log-level debug` on an export prints its steps' times.
# usage: bench/export_time.sh [OUT=build/bench-export]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build/bench-export}
source /root/.cache/sculpt/env.sh 2>/dev/null || true
py=${SCULPT_PYTHON:-$HOME/.cache/sculpt/venv/bin/python}
sculpt=${SCULPT:-$root/build/bin/sculpt}
[ -x "$sculpt" ] || { echo "no $sculpt: ninja -C build sculpt" >&2; exit 2; }
runs=${RUNS:-3}
mkdir -p "$out"
gpt2=$root/build/bench-hf/gpt2_124m
[ -d "$gpt2" ] || "$py" "$root/bench/hf_make_checkpoints.py" "$root/build/bench-hf"
llama=$out/llama_124m
if [ ! -f "$llama/model.safetensors" ]; then
  "$py" - "$llama" <<'PY'
import os, sys, torch, transformers
from transformers import LlamaConfig, LlamaForCausalLM
transformers.logging.set_verbosity_error()
torch.manual_seed(0)
m = LlamaForCausalLM(LlamaConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                 num_key_value_heads=4, intermediate_size=2048, vocab_size=32000,
                                 max_position_embeddings=2048, tie_word_embeddings=False)).eval()
m.save_pretrained(sys.argv[1] + ".tmp", safe_serialization=True)
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
print(f"{sys.argv[1]}: {sum(p.numel() for p in m.parameters()) / 1e6:.1f} M parameters")
PY
fi
[ -f "$out/tokens.bin" ] || "$py" -c "import numpy as np; np.random.default_rng(0).integers(4, 32000, 8192).astype('<u2').tofile('$out/tokens.bin')"

q8="{name: quantize, weight_bits: 8, act_bits: 8, weight_granularity: per_channel, verify: false}"
q4="{name: quantize, weight_bits: 4, act_bits: 0, weight_granularity: per_group, group_size: 128, verify: false}"
train() {  # tag checkpoint compression
  local d=$out/$1
  [ -f "$d/run/model.safetensors" ] && [ -z "${RETRAIN:-}" ] && return 0
  rm -rf "$d"; mkdir -p "$d"
  {
    echo "run: {name: $1, device: cpu, seed: 0, output_dir: '$d/run'}"
    echo "model: {name: hf, path: '$2'}"
    echo "data: {name: tokens, file: '$out/tokens.bin', seq_len: 32, batch_size: 2, val_fraction: 0.01, prefetch: 0}"
    echo "task: {name: language_model}"
    echo "optimizer: {name: sgd, lr: 1.0e-6}"
    echo "trainer: {max_steps: 1, log_every: 1, eval_every: 0, tensorboard: false}"
    [ -n "$3" ] && printf 'compression:\n  - %s\n' "$3"
  } > "$d/run.yaml"
  "$sculpt" train "$d/run.yaml" --log-level error > /dev/null
}
train gpt2_fp32 "$gpt2" ""
train gpt2_w8a8 "$gpt2" "$q8"
train llama_w8a8 "$llama" "$q8"
train llama_w4a16 "$llama" "$q4"
uptime

"$py" - "$sculpt" "$out" "$runs" <<'PY'
import json, os, subprocess, sys, time
sculpt, out, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])

def best(run, fmt, extra):
    t_best = None
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sculpt, "export", run, "--format", fmt, "--force", "--log-level", "error"] + extra,
                       check=True, stdout=subprocess.DEVNULL)
        s = time.perf_counter() - t
        t_best = s if t_best is None else min(t_best, s)
    return t_best

print("| model | run | format | export s (verified) | export s (--no-verify) | target |")
print("|---|---|---|---|---|---|")
for model, tag, fmt in (("GPT-2 124M", "gpt2_fp32", "hf"), ("GPT-2 124M", "gpt2_fp32", "onnx"),
                        ("GPT-2 124M", "gpt2_w8a8", "onnx"), ("llama 124M", "llama_w8a8", "hf"),
                        ("llama 124M", "llama_w8a8", "compressed-tensors"),
                        ("llama 124M", "llama_w4a16", "compressed-tensors")):
    run = os.path.join(out, tag, "run")
    v, nv = best(run, fmt, []), best(run, fmt, ["--no-verify"])
    print(f"| {model} | {tag} | {fmt} | {v:.2f} | {nv:.2f} | <= 10 s {'ok' if max(v, nv) <= 10 else 'MISSED'} |")
print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
PY
