#!/usr/bin/env python3
"""Continual learning on MNIST (issue 8's measured results), through `sculpt train`:

- Permuted MNIST (domain-incremental, MLP 784-400-400-10, configs/permuted_mnist_ewc.yaml):
  naive fine-tuning, EWC (one penalty per increment), online EWC, replay (1000-sample reservoir
  buffer), EWC + replay;
- Split MNIST (5 x 2 classes, configs/split_mnist_replay.yaml): class-incremental naive and
  replay (1000-sample class-balanced buffer); task-incremental (logits masked to the
  increment's classes) naive and online EWC.

Prints average accuracy, BWT, FWT, forgetting, the mean step time and the time per increment,
as a Markdown table. The step time of a method against naive is the penalty's overhead.

    $SCULPT_PYTHON bench/continual_mnist.py --data ../shared/data/mnist [--increments 10] [--epochs 1] \
        [--scheduler cosine] [--ewc-lambda 60] [--replay-ewc-lambda 30]
"""
import argparse
import json
import os
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PERMUTED = {
    "naive": "compression=[]",
    "ewc": "compression=[{name: ewc, mode: separate, lambda: LAMBDA, samples: 1000}]",
    "online ewc": "compression=[{name: ewc, mode: online, gamma: 1.0, lambda: LAMBDA, samples: 1000}]",
    "replay": "compression=[{name: replay, buffer: 1000, policy: reservoir, batch_size: 128}]",
    "ewc + replay": "compression=[{name: ewc, mode: online, lambda: RLAMBDA, samples: 1000}, "
                    "{name: replay, buffer: 1000, policy: reservoir, batch_size: 128}]",
}
SPLIT = {
    "naive": "compression=[]",
    "replay": "compression=[{name: replay, buffer: 1000, policy: class_balanced, batch_size: 128}]",
    "task-incremental naive": "compression=[]|incremental.scenario=task_incremental",
    "task-incremental ewc": "compression=[{name: ewc, mode: online, lambda: LAMBDA, samples: 1000}]"
                            "|incremental.scenario=task_incremental",
}


def train(sculpt, config, out, overrides):
    subprocess.run([sculpt, "train", os.path.join(ROOT, config), f"run.output_dir={out}",
                    "--log-level", "warn"] + overrides, check=True)
    with open(os.path.join(out, "summary.json")) as f:
        return json.load(f)


def row(name, s):
    c = s["continual"]
    secs = c["increment_seconds"]
    return (f"| {name} | {c['average_accuracy']:.4f} | {c.get('bwt', 0):+.4f} | {c.get('fwt', 0):+.4f} "
            f"| {c.get('forgetting_from_best', 0):.4f} | {1000 * s['mean_step_s']:.2f} "
            f"| {sum(secs) / len(secs):.1f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "mnist"))
    ap.add_argument("--sculpt", default=os.path.join(ROOT, "build", "bin", "sculpt"))
    ap.add_argument("--increments", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--ewc-lambda", type=float, default=100)
    ap.add_argument("--replay-ewc-lambda", type=float,
                    help="lambda of the EWC term of ewc + replay (default: --ewc-lambda); replay "
                         "already protects the old increments, so a lighter penalty keeps more "
                         "room for the new ones")
    ap.add_argument("--scheduler", default="constant",
                    help="scheduler.name: the learning-rate schedule within each increment (cosine)")
    ap.add_argument("--only", choices=["permuted", "split"], help="run one benchmark")
    args = ap.parse_args()
    if args.replay_ewc_lambda is None:
        args.replay_ewc_lambda = args.ewc_lambda
    work = tempfile.mkdtemp(prefix="sculpt-continual-")
    header = ("| method | average accuracy | BWT | FWT | forgetting (from best) | ms/step "
              "| s/increment |\n|---|---|---|---|---|---|---|")
    common = [f"data.dir={args.data}", f"trainer.epochs={args.epochs}",
              f"scheduler.name={args.scheduler}"]
    if args.only != "split":
        incs = ", ".join(f"{{name: perm{i}, permute_pixels: {{seed: {i}}}}}"
                         for i in range(args.increments))
        print(f"Permuted MNIST: {args.increments} increments, {args.epochs} epoch(s) each, "
              f"schedule {args.scheduler}, EWC lambda {args.ewc_lambda} (with replay: "
              f"{args.replay_ewc_lambda})\n\n{header}", flush=True)
        for name, recipe in PERMUTED.items():
            s = train(args.sculpt, "configs/permuted_mnist_ewc.yaml",
                      os.path.join(work, "permuted_" + name.replace(" ", "_").replace("+", "")),
                      common + [f"increments=[{incs}]",
                                recipe.replace("RLAMBDA", str(args.replay_ewc_lambda))
                                      .replace("LAMBDA", str(args.ewc_lambda))])
            print(row(name, s), flush=True)
    if args.only != "permuted":
        print(f"\nSplit MNIST: 5 increments of 2 classes, class-incremental, {args.epochs} "
              f"epoch(s) each\n\n{header}", flush=True)
        for name, recipe in SPLIT.items():
            s = train(args.sculpt, "configs/split_mnist_replay.yaml",
                      os.path.join(work, "split_" + name.replace(" ", "_")),
                      common + recipe.replace("LAMBDA", str(args.ewc_lambda)).split("|"))
            print(row(name, s), flush=True)
    print(f"\nrun directories: {work}")


if __name__ == "__main__":
    main()
