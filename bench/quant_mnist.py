#!/usr/bin/env python3
"""Quantization on MNIST (issue 6's measured results). Per model and seed: an FP32 run, then from
its weights PTQ int8 (calibration only), QAT int8, QAT w4a8 and QAT w2a8 fine-tunes. Prints test
error mean +- std per variant, the gap to FP32, the exported bytes / FP32 bytes, and the mean
step time of QAT against the FP32 fine-tune with the same settings (same process order, same
machine). With --ao it also times PyTorch's eager torch.ao QAT on the same LeNet-5 as reference.

    $SCULPT_PYTHON bench/quant_mnist.py --data ../shared/data/mnist [--models lenet5 mlp64] [--ao]
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODELS = {
    "lenet5": ("configs/mnist_lenet5.yaml", []),
    "mlp64": ("configs/mnist_mlp.yaml", ["model.hidden=[64]"]),
}

VARIANTS = {
    "PTQ int8": ["trainer.epochs=0",
                 "compression=[{name: quantize, mode: ptq, calibration_batches: 32}]"],
    "QAT int8": ["compression=[{name: quantize, freeze_observers_at: 1e}]"],
    "QAT w4a8": ["compression=[{name: quantize, weight_bits: 4, freeze_observers_at: 1e}]"],
    "QAT w2a8": ["compression=[{name: quantize, weight_bits: 2, lsq: true, freeze_observers_at: 1e}]"],
}


def train(sculpt, config, out, overrides):
    subprocess.run([sculpt, "train", os.path.join(ROOT, config), f"run.output_dir={out}",
                    "--log-level", "warn"] + overrides, check=True)
    with open(os.path.join(out, "summary.json")) as f:
        return json.load(f)


def quant_summary(s):
    for c in s.get("compression", []):
        if c["pass"] == "quantize":
            return c["summary"]
    return {}


def fmt(xs):
    return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs) if len(xs) > 1 else 0:.2f}"


def ao_reference(steps=200):
    """Step time of eager PyTorch FP32 vs torch.ao QAT (fbgemm qconfig) on LeNet-5, batch 64."""
    import torch
    import torch.nn as nn
    from torch.ao import quantization as tq

    class LeNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
            self.c1, self.c2 = nn.Conv2d(1, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
            self.f1, self.f2, self.f3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)
            self.r = nn.ReLU()
            self.p = nn.MaxPool2d(2)

        def forward(self, x):
            x = self.quant(x)
            x = self.p(self.r(self.c1(x)))
            x = self.p(self.r(self.c2(x)))
            x = self.r(self.f1(x.flatten(1)))
            x = self.r(self.f2(x))
            return self.dequant(self.f3(x))

    torch.manual_seed(0)
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))

    def time_steps(model):
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        for i in range(steps + 20):
            if i == 20:
                t0 = time.perf_counter()
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        return (time.perf_counter() - t0) / steps

    fp = LeNet().train()
    qat = LeNet().train()
    qat.qconfig = tq.get_default_qat_qconfig("fbgemm")
    tq.prepare_qat(qat, inplace=True)
    t_fp, t_qat = time_steps(fp), time_steps(qat)
    return t_fp, t_qat


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "mnist"))
    ap.add_argument("--sculpt", default=os.path.join(ROOT, "build", "bin", "sculpt"))
    ap.add_argument("--models", nargs="+", default=["lenet5", "mlp64"])
    ap.add_argument("--epochs", type=int, default=8, help="FP32 epochs")
    ap.add_argument("--qat-epochs", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--ao", action="store_true", help="also time torch.ao eager QAT (reference)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sculpt-quant-")
    print(f"work dir {work}; FP32 {args.epochs} epochs, QAT fine-tunes {args.qat_epochs} epochs "
          f"at lr 0.005 (cosine), {args.seeds} seeds\n", flush=True)
    for name in args.models:
        config, extra = MODELS[name]
        errs = {k: [] for k in ["FP32", *VARIANTS]}
        ratios, step_fp, step_qat = [], [], []
        for seed in range(args.seeds):
            base = [f"data.dir={args.data}", f"run.seed={seed}", "trainer.tensorboard=false"] + extra
            fp_dir = os.path.join(work, f"{name}-fp-{seed}")
            fp = train(args.sculpt, config, fp_dir, base + [f"trainer.epochs={args.epochs}"])
            errs["FP32"].append(100 * (1 - fp["final"]["test"]["accuracy"]))
            tune = base + [f"model.init={fp_dir}", f"trainer.epochs={args.qat_epochs}",
                           "optimizer.lr=0.005", "scheduler.warmup_steps=0"]
            # The FP32 fine-tune with the same settings: the step-time reference.
            ft = train(args.sculpt, config, os.path.join(work, f"{name}-ft-{seed}"), tune)
            step_fp.append(ft["mean_step_s"])
            for variant, ov in VARIANTS.items():
                s = train(args.sculpt, config, os.path.join(work, f"{name}-{variant.replace(' ', '_')}-{seed}"),
                          tune + ov)
                errs[variant].append(100 * (1 - s["final"]["test"]["accuracy"]))
                q = quant_summary(s)
                if variant == "QAT int8":
                    ratios.append(q["size_ratio"])
                    step_qat.append(s["mean_step_s"])
        fp_mean = statistics.mean(errs["FP32"])
        print(f"### {name} ({fp['model']['params']} parameters, {fp['model']['bytes']} FP32 bytes)\n")
        print("| variant | test error % (mean ± std) | gap to FP32 (pt) |")
        print("|---|---|---|")
        for k, v in errs.items():
            print(f"| {k} | {fmt(v)} | {statistics.mean(v) - fp_mean:+.2f} |")
        print(f"\nint8 export bytes / FP32 bytes: {statistics.mean(ratios):.3f}")
        print(f"mean step time: FP32 fine-tune {1e3 * statistics.mean(step_fp):.3f} ms, QAT int8 "
              f"{1e3 * statistics.mean(step_qat):.3f} ms, ratio "
              f"{statistics.mean(step_qat) / statistics.mean(step_fp):.2f}\n", flush=True)
    if args.ao:
        t_fp, t_qat = ao_reference()
        print(f"PyTorch eager LeNet-5 (batch 64): FP32 {1e3 * t_fp:.3f} ms/step, torch.ao QAT "
              f"{1e3 * t_qat:.3f} ms/step, ratio {t_qat / t_fp:.2f}")


if __name__ == "__main__":
    main()
