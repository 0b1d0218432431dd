#!/usr/bin/env python3
"""The Python libraries on the same corpus and tokenizers as bench_tokenize: `tokenizers`'
Tokenizer.encode_batch (Rust, rayon threads = RAYON_NUM_THREADS, set by the caller) for the
tokenizer.json directories, `sentencepiece`'s encode(list, num_threads) for the .model ones
(plus the <s>/</s> that the directory's tokenizer adds, as Sculpt does). Median of REPS passes
after one warm-up pass; one JSON line per tokenizer, as bench_tokenize prints.
Usage: tokenize_ref.py FIXTURE_DIR THREADS REPS NAME...
"""
import json
import os
import statistics
import sys
import time

import sentencepiece as spm
from tokenizers import Tokenizer


def main():
    d, threads, reps, names = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    with open(os.path.join(d, "corpus.txt"), encoding="utf-8", newline="\n") as f:
        lines = f.read().split("\n")[:-1]
    nbytes = sum(len(s.encode("utf-8")) + 1 for s in lines)
    for name in names:
        path = os.path.join(d, name)
        if os.path.exists(os.path.join(path, "tokenizer.json")):
            tok = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))

            def run():
                return [e.ids for e in tok.encode_batch(lines, add_special_tokens=True)]
        else:
            model = next(f for f in os.listdir(path) if f.endswith(".model"))
            sp = spm.SentencePieceProcessor(model_file=os.path.join(path, model))
            with open(os.path.join(path, "tokenizer_config.json"), encoding="utf-8") as f:
                cfg = json.load(f)
            bos = [sp.bos_id()] if cfg.get("add_bos_token") else []
            eos = [sp.eos_id()] if "T5" in cfg.get("tokenizer_class", "") else []

            def run():
                return [bos + ids + eos for ids in sp.encode(lines, num_threads=threads)]
        total = sum(len(x) for x in run())
        secs = []
        for _ in range(reps):
            t0 = time.perf_counter()
            run()
            secs.append(time.perf_counter() - t0)
        s = statistics.median(secs)
        print(json.dumps({"name": name, "threads": threads, "seconds": round(s, 5),
                          "lines_per_s": round(len(lines) / s), "mb_per_s": round(nbytes / s / 1e6, 3),
                          "tokens": total}), flush=True)


if __name__ == "__main__":
    main()
