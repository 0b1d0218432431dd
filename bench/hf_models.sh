#!/usr/bin/env bash
# Sculpt's Hugging Face models against `transformers` on the same random-weight checkpoints
# (bench/hf_make_checkpoints.py, written once under OUT), both at 2 threads:
#   train     llama (hidden 512, 8 layers, 8/2 heads, vocab 32000), batch 4 x 256 tokens, AdamW:
#             median ms/step (3 warm-up + 10 timed steps) and the process's peak RSS
#             (target: Sculpt <= 0.9x the time, <= 0.8x the peak RSS)
#   generate  the same model, 64 greedy tokens after a 16-token prompt at batch 1, KV cache:
#             median ms of 5 runs, and whether both give the same ids (target <= 0.7x)
#   load      GPT-2 124M (GPT2LMHeadModel defaults): whole-process wall time of a process that
#             only loads the checkpoint, Sculpt's binary against `python -c from_pretrained`
#             (imports included), whole-process timings, alternated (target <= 0.5x)
# Train and generate run ROUNDS times, Sculpt and transformers alternated, each in its own
# process; the table takes the median over rounds of each side's in-process median and the
# median of the per-round ratios. A shared machine's other load slows both sides: the load
# average is printed before and after.
# Usage: bench/hf_models.sh [OUT=build/bench-hf] [ROUNDS=2] [LOAD_RUNS=7]
#   env: SCULPT_BIN (default build/bin/bench_hf_models), SCULPT_PYTHON (the venv's python),
#        THREADS (default 2), WARMUP/STEPS (train, default 3/10), REPS (generate, default 5)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out=${1:-$root/build/bench-hf}; rounds=${2:-2}; load_runs=${3:-7}
if [ -z "${SCULPT_PYTHON:-}" ] && [ -f /root/.cache/sculpt/env.sh ]; then
  source /root/.cache/sculpt/env.sh
fi
py=${SCULPT_PYTHON:-python3}
bin=${SCULPT_BIN:-$root/build/bin/bench_hf_models}
[ -x "$bin" ] || { echo "no $bin: ninja -C build bench_hf_models" >&2; exit 2; }
"$py" "$root/bench/hf_make_checkpoints.py" "$out"
export OMP_NUM_THREADS=${THREADS:-2} BENCH_THREADS=${THREADS:-2}
uptime
"$py" - "$bin" "$py" "$root/bench/hf_models_ref.py" "$out" "$rounds" "$load_runs" \
  "${WARMUP:-3}" "${STEPS:-10}" "${REPS:-5}" <<'PY'
import json, os, statistics as st, subprocess, sys, time
bin_, py, ref, out, rounds, load_runs, warmup, steps, reps = sys.argv[1:]
rounds, load_runs = int(rounds), int(load_runs)
llama, gpt2 = os.path.join(out, "llama_bench"), os.path.join(out, "gpt2_124m")

def run(cmd):
    """Runs cmd to the end: (wall s, peak RSS MiB from wait4, its last stdout line as JSON)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    text = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        sys.exit(f"{' '.join(cmd)}: exit status {status}")
    lines = [l for l in text.splitlines() if l.startswith("{")]
    return wall, ru.ru_maxrss / 1024.0, json.loads(lines[-1]) if lines else {}

def alternate(mode, d, args, n):
    """n rounds of Sculpt then transformers: ([sculpt JSON], [transformers JSON], [walls], [walls])."""
    s, t, sw, tw = [], [], [], []
    for i in range(n):
        for side, cmd in (("sculpt", [bin_, mode, d, *args]), ("transformers", [py, ref, mode, d, *args])):
            wall, rss, j = run(cmd)
            (s if side == "sculpt" else t).append(j)
            (sw if side == "sculpt" else tw).append(wall)
            if mode != "load":
                print(f"  {mode} round {i + 1} {side}: " + ", ".join(
                    f"{k} {j[k]}" for k in ("ms_per_step", "ms", "peak_rss_mib", "loss_first") if k in j),
                    file=sys.stderr)
    return s, t, sw, tw

med = st.median
rows = []
def row(what, a, b, target):
    rows.append((what, a, b, a / b, target))

s, t, _, _ = alternate("train", llama, [warmup, steps], rounds)
row("train ms/step (median)", med(j["ms_per_step"] for j in s), med(j["ms_per_step"] for j in t), "<= 0.90")
pair_train = [a["ms_per_step"] / b["ms_per_step"] for a, b in zip(s, t)]
row("train peak RSS MiB", med(j["peak_rss_mib"] for j in s), med(j["peak_rss_mib"] for j in t), "<= 0.80")
loss_s, loss_t = s[0]["loss_first"], t[0]["loss_first"]

s, t, _, _ = alternate("generate", llama, [reps, "64"], rounds)
row("generate 64 tokens ms (median)", med(j["ms"] for j in s), med(j["ms"] for j in t), "<= 0.70")
pair_gen = [a["ms"] / b["ms"] for a, b in zip(s, t)]
same = all(a["ids"] == b["ids"] for a, b in zip(s, t))

s, t, sw, tw = alternate("load", gpt2, [], load_runs)
row("load GPT-2 124M, whole process s", med(sw), med(tw), "<= 0.50")
pair_load = [a / b for a, b in zip(sw, tw)]

print("| measure | Sculpt | transformers | Sculpt / transformers | target |")
print("|---|---|---|---|---|")
for what, a, b, r, target in rows:
    print(f"| {what} | {a:.2f} | {b:.2f} | {r:.2f} | {target} |")
print(f"median of the per-round ratios: train {med(pair_train):.2f}, generate {med(pair_gen):.2f}, "
      f"load {med(pair_load):.2f} (load runs: Sculpt {min(sw):.2f}-{max(sw):.2f} s, "
      f"transformers {min(tw):.2f}-{max(tw):.2f} s)")
print(f"first training loss: Sculpt {loss_s:.6f}, transformers {loss_t:.6f}; "
      f"generated ids {'match' if same else 'DIFFER'}")
PY
uptime
