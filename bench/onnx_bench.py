"""The measurements of bench/onnx_export.sh (see there). Prints one JSON object and a table."""
import argparse
import gzip
import json
import os
import statistics
import subprocess
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort


def read_idx(path):
    with gzip.open(path) if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def mnist_test(folder, info):
    """t10k as the export's normalization (export.json) says: (pixel / 255 - mean) / std."""
    find = lambda stem: next(os.path.join(folder, f) for f in os.listdir(folder) if f.startswith(stem))
    x = read_idx(find("t10k-images")).astype(np.float32) / 255.0
    n = info["normalization"]
    if "mean" in n:
        x = (x - np.float32(n["mean"][0])) / np.float32(n["std"][0])
    return x[:, None, :, :].astype(np.float32), read_idx(find("t10k-labels")).astype(np.int64)


def session(path, threads, optimized=None):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if optimized:
        so.optimized_model_filepath = optimized
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def latency_ms(sessions, x, reps, block=25):
    """Median latency (ms) of each session on x, measured in alternating blocks of `block` runs
    (fp32 block, int8 block, ...) so that a shared machine's load changes reach both alike; also
    the median over blocks of each block's int8 / fp32 ratio of medians."""
    feeds = [{s.get_inputs()[0].name: x} for s in sessions]
    for s, f in zip(sessions, feeds):
        for _ in range(20):
            s.run(["logits"], f)
    times = [[] for _ in sessions]
    blocks = [[] for _ in sessions]
    for _ in range(max(1, reps // block)):
        for i, (s, f) in enumerate(zip(sessions, feeds)):
            b = []
            for _ in range(block):
                t = time.perf_counter()
                s.run(["logits"], f)
                b.append((time.perf_counter() - t) * 1e3)
            times[i] += b
            blocks[i].append(statistics.median(b))
    ratio = statistics.median(q / f for f, q in zip(blocks[0], blocks[-1]))
    return [statistics.median(t) for t in times], ratio


def accuracy(sess, x, y):
    name = sess.get_inputs()[0].name
    correct = 0
    for i in range(0, len(x), 500):
        correct += int((sess.run(["logits"], {name: x[i:i + 500]})[0].argmax(-1) == y[i:i + 500]).sum())
    return correct / len(x)


def timed(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mnist", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--sculpt", required=True)
    p.add_argument("--gpt2-run")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=200)
    a = p.parse_args()
    res = {"onnxruntime": ort.__version__, "threads": a.threads, "load_average": os.getloadavg()}
    models = {}
    sessions, xs = {}, None
    for tag, cfg in (("fp32", "mnist_lenet5"), ("int8", "mnist_lenet5_qat")):
        d = os.path.join(a.out, cfg, "export-onnx")
        info = json.load(open(os.path.join(d, "export.json")))
        x, y = mnist_test(a.mnist, info)
        with tempfile.TemporaryDirectory() as tmp:
            opt = os.path.join(tmp, "opt.onnx")
            sess = session(os.path.join(d, "model.onnx"), a.threads, opt)
            ops = sorted({n.op_type for n in onnx.load(opt).graph.node})
        sess = session(os.path.join(d, "model.onnx"), a.threads)
        sessions[tag] = os.path.join(d, "model.onnx")
        xs = x
        ev = json.load(open(os.path.join(a.out, cfg, "eval.json")))
        models[tag] = {
            "accuracy": accuracy(sess, x, y),
            "sculpt_eval_accuracy": ev["test"]["accuracy"],
            "bytes": os.path.getsize(os.path.join(d, "model.onnx")),
            "optimized_ops": ops,
            "verify_max_abs_diff": info["verify"]["max_abs_diff"],
        }
    res["lenet5"] = models
    f, q = models["fp32"], models["int8"]
    # latency at batch 64, both sessions with the same threads (a.threads, and 1)
    for threads in sorted({a.threads, 1}, reverse=True):
        pair = [session(sessions["fp32"], threads), session(sessions["int8"], threads)]
        (lf, lq), ratio = latency_ms(pair, xs[:64], a.reps)
        key = "" if threads == a.threads else f"_{threads}_thread"
        f["latency_ms_batch64" + key], q["latency_ms_batch64" + key] = lf, lq
        res["latency_ratio_int8_fp32" + key] = ratio
    q["space_to_depth"] = json.load(open(os.path.join(a.out, "mnist_lenet5_qat", "export-onnx",
                                                      "export.json"))).get("space_to_depth", [])
    res["accuracy_points_int8_minus_fp32"] = 100 * (q["accuracy"] - f["accuracy"])
    res["integer_ops"] = [o for o in q["optimized_ops"] if o.startswith("QLinear") or o == "QGemm" or "Integer" in o]
    if a.gpt2_run:
        run = a.gpt2_run
        times = {}
        for label, extra in (("no_verify", ["--no-verify"]), ("verify", [])):
            times[label] = timed([a.sculpt, "export", run, "--format", "onnx", "--force", "--log-level", "warn"] + extra)
        info = json.load(open(os.path.join(run, "export-onnx", "export.json")))
        res["gpt2_124m"] = {"export_s": times["no_verify"], "export_with_verify_s": times["verify"],
                            "parameters": info["parameters"], "bytes": info["bytes"],
                            "verify_max_abs_diff": info["verify"]["max_abs_diff"]}
    print(json.dumps(res, indent=1))
    one = f" (1 thread: fp32 {f['latency_ms_batch64_1_thread']:.3f} ms, int8 {q['latency_ms_batch64_1_thread']:.3f} ms, " \
          f"ratio {res['latency_ratio_int8_fp32_1_thread']:.2f})" if a.threads != 1 else ""
    print(f"load average {res['load_average'][0]:.2f}; "
          f"LeNet-5 MNIST, ORT CPU {a.threads} threads, batch 64: fp32 {f['latency_ms_batch64']:.3f} ms, "
          f"int8 QDQ {q['latency_ms_batch64']:.3f} ms, ratio {res['latency_ratio_int8_fp32']:.2f} (target <= 0.6; "
          f"median of per-block ratios){one}; "
          f"accuracy fp32 {100 * f['accuracy']:.2f}% (sculpt eval {100 * f['sculpt_eval_accuracy']:.2f}%), "
          f"int8 {100 * q['accuracy']:.2f}% (sculpt eval --quantized {100 * q['sculpt_eval_accuracy']:.2f}%); "
          f"integer kernels {res['integer_ops']}")
    if a.gpt2_run:
        g = res["gpt2_124m"]
        print(f"GPT-2 124M export: {g['export_s']:.2f} s (--no-verify), {g['export_with_verify_s']:.2f} s with "
              f"the ONNX Runtime check (target <= 10 s)")


if __name__ == "__main__":
    main()
