"""The Python side of bench_kernels: the same operators through torch.ops (the library loaded by
torch.ops.load_library) against PyTorch's own, timed from Python in the same run.

Usage: kernels_torch.py <libsculpt_kernels.so> [--device cpu|cuda] [--threads N]
Prints markdown tables: fake-quant forward+backward (per channel, STE and LSQ) and block-sparse
Linear forward against dense F.linear and torch's BSR matmul (w.to_sparse_bsr() @ x^T; on CUDA
with bf16 that is torch's Triton bsr_dense_mm).
"""
import argparse
import math
import statistics
import time
import warnings

import torch

warnings.filterwarnings("ignore", message=".*Sparse BSR tensor support is in beta.*")

ap = argparse.ArgumentParser()
ap.add_argument("lib")
ap.add_argument("--device", default="cpu")
ap.add_argument("--threads", type=int, default=1)
args = ap.parse_args()
torch.ops.load_library(args.lib)
torch.set_num_threads(args.threads)
dev = torch.device(args.device)
cuda = dev.type == "cuda"
if cuda:  # the CUDA half of the ops lives next door (kernels/cuda_entries.h)
    torch.ops.load_library(args.lib.replace("libsculpt_kernels.", "libsculpt_kernels_cuda."))
torch.manual_seed(0)


def sync():
    if cuda:
        torch.cuda.synchronize()


# CPU: process CPU time (robust to other processes' load, as bench_kernels); CUDA: wall time.
clock = time.perf_counter if cuda else time.process_time


def median_us(fns, iters, rounds=7):
    """Median microseconds per call of each function, timed alternately."""
    for f in fns:
        f()
    times = [[] for _ in fns]
    for _ in range(rounds):
        for i, f in enumerate(fns):
            sync()
            t0 = clock()
            for _ in range(iters):
                f()
            sync()
            times[i].append((clock() - t0) / iters * 1e6)
    return [statistics.median(t) for t in times]


def fq():
    n = (1 << 26) if cuda else (1 << 22)
    c = 256
    iters = 20 if cuda else 10
    x = (torch.randn(c, n // c, device=dev) * 3).requires_grad_()
    gy = torch.randn_like(x)
    scale = torch.rand(c, device=dev) * 0.05 + 0.02
    zp = torch.randint(0, 256, (c,), device=dev).float()
    g = 1.0 / math.sqrt(n // c * 255)
    s = scale.clone().requires_grad_()
    z = zp.clone().requires_grad_()

    def run(y, *params):
        y.backward(gy)
        for p in (x, *params):
            p.grad = None

    aten_ste = lambda: run(torch.fake_quantize_per_channel_affine(x, scale, zp.int(), 0, 0, 255))
    ours_ste = lambda: run(torch.ops.sculpt.fake_quant(x, scale, zp, 0, 0, 255))
    aten_lsq = lambda: run(torch._fake_quantize_learnable_per_channel_affine(x, s, z, 0, 0, 255, g), s, z)
    ours_lsq = lambda: run(torch.ops.sculpt.fake_quant(x, s, z, 0, 0, 255, g), s, z)
    a1, o1, a2, o2 = median_us([aten_ste, ours_ste, aten_lsq, ours_lsq], iters)
    print(f"\n### Python: fake-quant fwd+bwd per channel, {n} fp32 elements, {dev.type}\n")
    print("| case | torch (us) | torch.ops.sculpt (us) | speed-up |\n|---|---|---|---|")
    print(f"| STE (fake_quantize_per_channel_affine) | {a1:.1f} | {o1:.1f} | {a1 / o1:.2f}x |")
    print(f"| LSQ (_fake_quantize_learnable_per_channel_affine) | {a2:.1f} | {o2:.1f} | {a2 / o2:.2f}x |")


def bsr():
    out = inp = 4096 if cuda else 2048
    batch = 8192 if cuda else 256
    dtype = torch.bfloat16 if cuda else torch.float32
    iters = 20 if cuda else 5
    x = torch.randn(batch, inp, device=dev, dtype=dtype)
    xt = x.t().contiguous()
    print(f"\n### Python: block-sparse Linear, W {out}x{inp}, batch {batch}, {dtype}, {dev.type}\n")
    print("| block | sparsity | dense F.linear (us) | torch BSR matmul (us) | sculpt bsr_linear (us) "
          "| vs dense | vs torch BSR |\n|---|---|---|---|---|---|---|")
    for b in ([32, 64] if cuda else [32]):
        for sparsity in (0.9, 0.75, 0.5):
            keep = torch.rand(out // b, inp // b, device=dev) >= sparsity
            w = (torch.randn(out, inp, device=dev) * 0.05 *
                 keep.repeat_interleave(b, 0).repeat_interleave(b, 1)).to(dtype)
            crow, col, vals = torch.ops.sculpt.bsr_from_dense(w, b)
            fns = [lambda: torch.nn.functional.linear(x, w),
                   lambda: torch.ops.sculpt.bsr_linear(x, crow, col, vals, None, False)]
            try:
                wb = w.to_sparse_bsr((b, b))
                torch.mm(wb, xt)
                fns.append(lambda: torch.mm(wb, xt))
            except Exception:  # noqa: BLE001 - torch lacks this BSR path here
                pass
            with torch.no_grad():
                t = median_us(fns, iters)
            tb = t[2] if len(t) > 2 else float("nan")
            print(f"| {b} | {sparsity:.0%} | {t[0]:.1f} | {tb:.1f} | {t[1]:.1f} | "
                  f"{t[0] / t[1]:.2f}x | {tb / t[1]:.2f}x |")


fq()
bsr()
