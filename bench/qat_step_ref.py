#!/usr/bin/env python3
"""The PyTorch reference for build/bin/bench_qat_step (issue 6: QAT step / FP32 step on CPU):
the same MLP 784-64-10 at batch 64 in eager PyTorch, FP32 against torch.ao eager QAT (fbgemm
qconfig: per-channel int8 weights, per-tensor int8 activations, observers on), one SGD step
(forward, loss, backward, update) per batch, every batch gathered afresh from 8192 random
samples, plain and QAT alternated in short rounds. Prints the same Markdown row as the C++
benchmark.

    OMP_NUM_THREADS=1 $SCULPT_PYTHON bench/qat_step_ref.py [steps per round, default 50] [rounds, default 40]
"""
import statistics
import sys
import time
import warnings

import torch
import torch.nn as nn
from torch.ao import quantization as tq


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.f1, self.f2, self.r = nn.Linear(784, 64), nn.Linear(64, 10), nn.ReLU()

    def forward(self, x):
        return self.dequant(self.f2(self.r(self.f1(self.quant(x)))))


def main():
    warnings.filterwarnings("ignore")  # torch.ao's deprecation notices
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    torch.manual_seed(0)
    inputs, targets = torch.randn(8192, 784), torch.randint(0, 10, (8192,))
    order = torch.randperm(8192)
    plain = MLP().train()
    qat = MLP().train()
    qat.qconfig = tq.get_default_qat_qconfig("fbgemm")
    tq.prepare_qat(qat, inplace=True)
    sgd = {m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
           for m in (plain, qat)}
    pos = [0]

    def step(model):
        if pos[0] + 64 > 8192:
            pos[0] = 0
        idx = order[pos[0]:pos[0] + 64]
        pos[0] += 64
        x, y = inputs.index_select(0, idx), targets.index_select(0, idx)
        opt = sgd[model]
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(50):
        step(plain), step(qat)
    times = {plain: [], qat: []}
    for _ in range(rounds):
        for model in (plain, qat):
            t0 = time.perf_counter()
            for _ in range(steps):
                step(model)
            times[model].append(1e3 * (time.perf_counter() - t0) / steps)
    a, b = statistics.median(times[plain]), statistics.median(times[qat])
    fa, fb = min(times[plain]), min(times[qat])
    print("| clock | FP32 ms/step (median, fastest) | torch.ao QAT ms/step (median, fastest) "
          "| QAT/FP32 medians | QAT/FP32 fastest |\n|---|---|---|---|---|")
    print(f"| wall | {a:.3f}, {fa:.3f} | {b:.3f}, {fb:.3f} | {b / a:.2f} | {fb / fa:.2f} |")


if __name__ == "__main__":
    main()
