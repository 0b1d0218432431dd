#!/usr/bin/env bash
# The token cache of text datasets (issue 25 target: the second run of a training on the same
# jsonl starts in <= 10% of the first run's tokenization time).
#   bench/text_cache.sh [LINES=50000] [BUILD=build]
# Writes a jsonl of LINES generated sentences, a WordPiece tokenizer (8k vocabulary) trained on it
# and a small BERT classifier of that vocabulary (the venv's tokenizers + transformers), then runs
# `sculpt train ... trainer.max_steps=1` twice: the first tokenizes the file into the cache beside
# it, the second reads the cache. Prints the data loading time of both (from the log lines
# "data: tokenized ..." / "... from the token cache ...") and each process's wall time.
set -euo pipefail
LINES=${1:-50000}
BUILD=${2:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${SCULPT_PYTHON:-/root/.cache/sculpt/venv/bin/python}
SCULPT="$ROOT/$BUILD/bin/sculpt"
[ -x "$SCULPT" ] || SCULPT=$(find "$ROOT/$BUILD" -name sculpt -type f -perm -u+x | head -1)
WORK=$(mktemp -d /tmp/sculpt-text-cache.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

"$PY" - "$WORK" "$LINES" <<'PYEOF'
import json, os, random, sys
out, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(0)
words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10)))
         for _ in range(20000)]
extra = ["café", "naïve", "日本語", "😀", "2024", "x=y+1;", "Hello,", "WORLD!"]
with open(os.path.join(out, "train.jsonl"), "w", encoding="utf-8") as f:
    for i in range(n):
        k = rng.randint(8, 40)
        text = " ".join(rng.choice(words) if rng.random() > 0.05 else rng.choice(extra)
                        for _ in range(k))
        f.write(json.dumps({"text": text, "label": ["a", "b", "c"][i % 3]}, ensure_ascii=False) + "\n")
from tokenizers import BertWordPieceTokenizer
from tokenizers.processors import TemplateProcessing
from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast
import torch
tok = BertWordPieceTokenizer(lowercase=True)
with open(os.path.join(out, "train.jsonl"), encoding="utf-8") as f:
    texts = [json.loads(l)["text"] for l in f]
tok.train_from_iterator(texts[:20000], vocab_size=8000,
                        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
tok._tokenizer.post_processor = TemplateProcessing(
    single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
    special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
fast = PreTrainedTokenizerFast(tokenizer_object=tok._tokenizer, unk_token="[UNK]",
                               pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
                               mask_token="[MASK]")
d = os.path.join(out, "bert")
fast.save_pretrained(d)
torch.manual_seed(0)
BertForSequenceClassification(BertConfig(
    vocab_size=len(fast), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
    intermediate_size=64, max_position_embeddings=128, num_labels=3)).save_pretrained(d)
PYEOF

cat > "$WORK/run.yaml" <<YAML
run: {name: text_cache, device: cpu}
data: {name: text, file: $WORK/train.jsonl, max_length: 64, batch_size: 32}
model: {name: hf, path: $WORK/bert}
optimizer: {name: adamw, lr: 0.0001}
trainer: {max_steps: 1, final_train_eval: false, eval_every: 1000000}
YAML

run() {  # $1: run name; prints the log to $WORK/$1.log and the wall seconds
  local t0 t1
  t0=$(date +%s.%N)
  "$SCULPT" train "$WORK/run.yaml" run.output_dir="$WORK/$1" --log-level info >"$WORK/$1.log" 2>&1
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}
first_wall=$(run first)
second_wall=$(run second)
tok_s=$(grep -o 'data: tokenized [^;]* in [0-9.e-]* s' "$WORK/first.log" | head -1 | sed 's/.* in \([0-9.e-]*\) s/\1/')
hit_s=$(grep -o 'from the token cache [^ ]* in [0-9.e-]* s' "$WORK/second.log" | head -1 | sed 's/.* in \([0-9.e-]*\) s/\1/')
if [ -z "$tok_s" ] || [ -z "$hit_s" ]; then
  echo "the log lines were not found:"; cat "$WORK/first.log" "$WORK/second.log"; exit 1
fi
echo "lines: $LINES   threads: $(nproc)   file: $(du -h "$WORK/train.jsonl" | cut -f1)   cache: $(du -h "$WORK"/train.jsonl.sculpt-tok-*.bin | cut -f1)"
echo "first run:  tokenization ${tok_s} s   (process wall ${first_wall} s)"
echo "second run: cache load   ${hit_s} s   (process wall ${second_wall} s)"
echo "second / first tokenization: $(echo "scale=4; $hit_s / $tok_s" | bc)   (target <= 0.10)"
