#!/usr/bin/env bash
# Batch encoding of the 10,000-line tokenizer test corpus: Sculpt (bench_tokenize) against the
# Python libraries (bench/tokenize_ref.py) with the same thread count, 1 and 2 threads:
# byte-level BPE (gpt2, llama3), WordPiece (bert), Unigram (t5_unigram) against `tokenizers`'
# encode_batch (target >= 1.0x its throughput), SentencePiece (sp_t5, sp_llama) against the
# `sentencepiece` package (target >= 0.9x). Sculpt and Python alternate ROUNDS times; the table
# shows the median over rounds of each side's median seconds per pass and their ratio.
# Usage: bench/tokenize.sh [FIXTURES=build/tokenizer-fixtures] [ROUNDS=3] [REPS=5]
#   env: SCULPT_BENCH_BIN (default build/bin/bench_tokenize), SCULPT_PYTHON, THREADS ("1 2")
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fix=${1:-$root/build/tokenizer-fixtures}; rounds=${2:-3}; reps=${3:-5}
if [ -z "${SCULPT_PYTHON:-}" ] && [ -f /root/.cache/sculpt/env.sh ]; then
  source /root/.cache/sculpt/env.sh
fi
py=${SCULPT_PYTHON:-python3}
bin=${SCULPT_BENCH_BIN:-$root/build/bin/bench_tokenize}
[ -x "$bin" ] || { echo "no $bin: ninja -C build bench_tokenize" >&2; exit 2; }
"$py" "$root/tests/text/make_tokenizers.py" "$fix" >&2
names="gpt2 llama3 bert t5_unigram sp_t5 sp_llama"
uptime >&2
tmp=$(mktemp)
for threads in ${THREADS:-1 2}; do
  for ((r = 0; r < rounds; ++r)); do
    "$bin" "$fix" "$threads" "$reps" $names | sed 's/^/sculpt /' >> "$tmp"
    RAYON_NUM_THREADS=$threads TOKENIZERS_PARALLELISM=true OMP_NUM_THREADS=$threads \
      "$py" "$root/bench/tokenize_ref.py" "$fix" "$threads" "$reps" $names | sed 's/^/python /' >> "$tmp"
  done
done
uptime >&2
"$py" - "$tmp" <<'PY'
import json, statistics as st, sys
rows = {}
for line in open(sys.argv[1]):
    side, rec = line.split(" ", 1)
    r = json.loads(rec)
    rows.setdefault((r["name"], r["threads"]), {}).setdefault(side, []).append(r)
target = {"sp_t5": 0.9, "sp_llama": 0.9}
print("| tokenizer | threads | Sculpt s/pass | Sculpt MB/s | Python s/pass | Python MB/s | throughput ratio | target |")
print("|---|---|---|---|---|---|---|---|")
for (name, threads), sides in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    s = st.median(r["seconds"] for r in sides["sculpt"])
    p = st.median(r["seconds"] for r in sides["python"])
    mb = sides["sculpt"][0]["mb_per_s"] * sides["sculpt"][0]["seconds"]
    # SentencePiece's reference encodes whole lines (no special-token split): counts may differ
    # by the few lines that hold a literal special token.
    diff = abs(sides["sculpt"][0]["tokens"] - sides["python"][0]["tokens"]) / sides["python"][0]["tokens"]
    t = target.get(name, 1.0)
    print(f"| {name} | {threads} | {s:.4f} | {mb / s:.2f} | {p:.4f} | {mb / p:.2f} | "
          f"{p / s:.2f}x{'' if diff < 0.005 else f' (token counts differ by {100 * diff:.1f}%!)'} | "
          f">= {t}x {'met' if p / s >= t else 'MISSED'} |")
PY
rm -f "$tmp"
