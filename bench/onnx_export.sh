#!/usr/bin/env bash
# ONNX export (issue 26): MNIST LeNet-5, float32 and QAT int8 (QDQ), exported with
# `sculpt export --format onnx` and run by ONNX Runtime on the CPU:
#   - latency at batch 64, int8 / fp32 <= 0.6, integer kernels in ONNX Runtime's optimized graph
#     (QLinearConv, QGemm, ...): both sessions with THREADS intra-op threads (and again with 1),
#     timed in alternating blocks of 25 runs (REPS in all) so that the load of a shared machine
#     reaches both alike; the ratio is the median of the blocks' int8 / fp32 ratios;
#   - test accuracy of both exports on MNIST's t10k (read from the IDX files and normalized as
#     export.json says), int8 within 0.1 points of fp32, each equal to `sculpt eval`'s;
#   - export time of GPT-2 124M (bench/hf_make_checkpoints.py's build/bench-hf/gpt2_124m):
#     `sculpt export RUN --format onnx` wall time, with and without the verification, <= 10 s.
# usage: bench/onnx_export.sh [MNIST_DIR]   (default ../shared/data/mnist)
#   EPOCHS (default 2) trains both LeNet-5 runs that long; THREADS (default 2) ORT/torch threads.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mnist=${1:-$root/../shared/data/mnist}
[ -d "$mnist" ] || { echo "no MNIST folder $mnist" >&2; exit 2; }
source /root/.cache/sculpt/env.sh 2>/dev/null || true
py=${SCULPT_PYTHON:-$HOME/.cache/sculpt/venv/bin/python}
sculpt=${SCULPT:-$root/build/bin/sculpt}
[ -x "$sculpt" ] || { echo "no $sculpt: ninja -C build sculpt" >&2; exit 2; }
out=${OUT:-$root/build/bench-onnx}
epochs=${EPOCHS:-2}
threads=${THREADS:-2}
export OMP_NUM_THREADS=$threads
mkdir -p "$out"
uptime

for cfg in mnist_lenet5 mnist_lenet5_qat; do
  if [ ! -f "$out/$cfg/model.safetensors" ] || [ -n "${RETRAIN:-}" ]; then
    "$sculpt" train "$root/configs/$cfg.yaml" run.device=cpu data.dir="$mnist" \
      trainer.epochs="$epochs" run.output_dir="$out/$cfg" --log-level warn
  fi
  /usr/bin/time -f "export $cfg: %e s" "$sculpt" export "$out/$cfg" --format onnx --force >/dev/null
  q=""; [ "$cfg" = mnist_lenet5_qat ] && q="--quantized"
  "$sculpt" eval "$out/$cfg/config.yaml" $q --log-level warn > "$out/$cfg/eval.json"
done

# GPT-2 124M: a one-step run of the checkpoint, then its export timed.
gpt2=$root/build/bench-hf/gpt2_124m
[ -d "$gpt2" ] || "$py" "$root/bench/hf_make_checkpoints.py" "$root/build/bench-hf"
g=$out/gpt2_124m
if [ ! -f "$g/run/model.safetensors" ]; then
  mkdir -p "$g"
  "$py" -c "import numpy as np; np.random.default_rng(0).integers(4, 50000, 4096).astype('<u2').tofile('$g/tokens.bin')"
  cat > "$g/run.yaml" <<EOF
run: {name: gpt2_124m, device: cpu, seed: 0, output_dir: '$g/run'}
model: {name: hf, path: '$gpt2'}
data: {name: tokens, file: '$g/tokens.bin', seq_len: 16, batch_size: 1, val_fraction: 0.01, prefetch: 0}
task: {name: language_model}
optimizer: {name: sgd, lr: 1.0e-6}
trainer: {max_steps: 1, log_every: 1, eval_every: 0, tensorboard: false}
EOF
  "$sculpt" train "$g/run.yaml" --log-level warn
fi

"$py" "$root/bench/onnx_bench.py" --mnist "$mnist" --out "$out" --sculpt "$sculpt" \
  --gpt2-run "$g/run" --threads "$threads" --reps "${REPS:-200}"
