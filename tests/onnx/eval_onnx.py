"""Accuracy of an exported ONNX classifier on a test set Sculpt wrote (tests/onnx, bench/).

usage: eval_onnx.py MODEL.onnx DATA.safetensors [--batch N] [--threads N]

DATA holds `input` (the rows exactly as Sculpt's evaluation feeds them, normalization applied)
and `labels` (int64). Prints {"accuracy": ..., "rows": ...} (accuracy in [0, 1], as
`sculpt eval` reports it).
"""
import argparse
import json

import numpy as np
import onnxruntime as ort
from safetensors.numpy import load_file


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    d = load_file(a.data)
    x, y = d["input"], d["labels"]
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    correct = 0
    for i in range(0, len(x), a.batch):
        logits = sess.run(["logits"], {name: x[i:i + a.batch]})[0]
        correct += int((logits.argmax(-1) == y[i:i + a.batch]).sum())
    print(json.dumps({"accuracy": correct / len(x), "rows": int(len(x)), "correct": correct}))


if __name__ == "__main__":
    main()
