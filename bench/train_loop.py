"""bench/train_loop: Sculpt's trainer against a minimal PyTorch Python loop, same model, batch,
data (MNIST), optimizer and thread count, in one run. Prints a markdown table: time per step,
ratio to Python, time to first step, peak RSS.

    $SCULPT_PYTHON bench/train_loop.py [--data ../shared/data/mnist] [--threads 2]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(cmd, env):
    """Runs cmd under /usr/bin/time; returns (stdout, peak RSS in MiB)."""
    with tempfile.NamedTemporaryFile("r") as rss:
        out = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name] + cmd, env=env, check=True,
                             capture_output=True, text=True).stdout
        return out, int(rss.read().strip().splitlines()[-1]) / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "mnist"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--sculpt", default=os.path.join(ROOT, "build", "bin", "sculpt"))
    ap.add_argument("overrides", nargs="*", help="extra key=value overrides for Sculpt (e.g. data.prefetch=0)")
    args = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    cases = [("mlp", "configs/mnist_mlp.yaml", 64, 1000), ("lenet5", "configs/mnist_lenet5.yaml", 128, 500)]
    rows = []
    for model, config, batch, steps in cases:
        with tempfile.TemporaryDirectory() as run_dir:
            _, rss_c = timed([args.sculpt, "train", os.path.join(ROOT, config), f"data.dir={args.data}",
                              f"data.batch_size={batch}", f"trainer.max_steps={steps}", "data.val_fraction=0",
                              "scheduler.name=constant", "scheduler.warmup_steps=0", "optimizer.weight_decay=0",
                              "optimizer.lr=0.05", f"trainer.log_every={steps}", f"run.output_dir={run_dir}",
                              "--log-level", "warn"] + args.overrides, env)
            with open(os.path.join(run_dir, "summary.json")) as f:
                s = json.load(f)
        out, rss_p = timed([sys.executable, os.path.join(ROOT, "bench", "train_loop_ref.py"), model, args.data,
                            str(batch), str(steps), str(args.threads)], env)
        p = json.loads(out.strip().splitlines()[-1])
        rows.append((model, batch, steps, s["mean_step_s"], p["mean_step_s"], s["time_to_first_step_s"],
                     p["time_to_first_step_s"], rss_c, rss_p))
    print(f"threads: {args.threads}\n")
    print("| model | batch | steps | Sculpt ms/step | PyTorch ms/step | ratio | Sculpt first step (s) "
          "| PyTorch first step (s) | Sculpt peak RSS (MiB) | PyTorch peak RSS (MiB) | RSS ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for m, b, n, sc, py, fc, fp, rc, rp in rows:
        print(f"| {m} | {b} | {n} | {sc * 1e3:.3f} | {py * 1e3:.3f} | {sc / py:.2f} | {fc:.2f} | {fp:.2f} "
              f"| {rc:.0f} | {rp:.0f} | {rc / rp:.2f} |")


if __name__ == "__main__":
    main()
