#!/usr/bin/env python3
"""Knowledge distillation on MNIST (issue 5's measured result): a LeNet-5 teacher trained with
Sculpt, then students MLP 784-H-10 trained with and without the distill pass, same steps, three
seeds each. Prints mean +- std test error and the ratio KD / plain (target <= 0.85).

    $SCULPT_PYTHON bench/distill_mnist.py --data ../shared/data/mnist [--hidden 100 30] \
        [--alpha 0.5 --temperature 4 --crop-padding 2]
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train(sculpt, config, out, overrides):
    subprocess.run([sculpt, "train", os.path.join(ROOT, config), f"run.output_dir={out}", "--log-level", "warn"]
                   + overrides, check=True)
    with open(os.path.join(out, "summary.json")) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "mnist"))
    ap.add_argument("--sculpt", default=os.path.join(ROOT, "build", "bin", "sculpt"))
    ap.add_argument("--hidden", type=int, nargs="+", default=[100])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--teacher", help="a trained teacher run directory to reuse")
    ap.add_argument("--crop-padding", type=int, default=0,
                    help="random-crop augmentation (pixels) of the students' training images, "
                         "plain and KD alike; the teacher labels the same shifted images")
    ap.add_argument("overrides", nargs="*", help="extra overrides for both students")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sculpt-kd-")
    if args.teacher:
        teacher = args.teacher
        with open(os.path.join(teacher, "summary.json")) as f:
            t = json.load(f)
    else:
        teacher = os.path.join(work, "teacher")
        t = train(args.sculpt, "configs/mnist_lenet5.yaml", teacher, [f"data.dir={args.data}"])
    t_err = 1 - t["final"]["test"]["accuracy"]
    print(f"teacher LeNet-5: test error {100 * t_err:.2f}% ({t['model']['params']} parameters)\n")
    print(f"students: {args.epochs} epochs, SGD 0.05 momentum 0.9, cosine; KD: alpha {args.alpha}, "
          f"temperature {args.temperature}; random-crop padding {args.crop_padding}; {args.seeds} seeds; "
          f"overrides {args.overrides}\n")
    kinds = ["plain", "kd"] + (["plain, no augmentation"] if args.crop_padding else [])
    print("| student | " + " | ".join(f"{k} test error % (mean ± std)" for k in kinds)
          + " | ratio KD/plain" + (" | ratio KD/plain without augmentation" if args.crop_padding else "") + " |")
    print("|---" * (len(kinds) + 2 + (1 if args.crop_padding else 0)) + "|")
    for h in args.hidden:
        errs = {k: [] for k in kinds}
        for seed in range(args.seeds):
            base = [f"data.dir={args.data}", f"model.hidden=[{h}]", f"run.seed={seed}",
                    f"trainer.epochs={args.epochs}", "optimizer.weight_decay=0"] + args.overrides
            for kind in kinds:
                extra = [f"data.random_crop_padding={0 if 'no augmentation' in kind else args.crop_padding}"]
                if kind == "kd":
                    extra.append(f"compression=[{{name: distill, teachers: [{teacher}], alpha: {args.alpha}, "
                                 f"temperature: {args.temperature}}}]")
                tag = kind.replace(", no augmentation", "-noaug")
                s = train(args.sculpt, "configs/mnist_mlp.yaml", os.path.join(work, f"{tag}-{h}-{seed}"),
                          base + extra)
                errs[kind].append(100 * (1 - s["final"]["test"]["accuracy"]))
        cells = [f"{statistics.mean(errs[k]):.2f} ± {statistics.stdev(errs[k]):.2f}" for k in kinds]
        ratios = [statistics.mean(errs["kd"]) / statistics.mean(errs["plain"])]
        if args.crop_padding:
            ratios.append(statistics.mean(errs["kd"]) / statistics.mean(errs["plain, no augmentation"]))
        print(f"| MLP 784-{h}-10 | " + " | ".join(cells) + " | "
              + " | ".join(f"{r:.2f}" for r in ratios) + " |", flush=True)

if __name__ == "__main__":
    main()
