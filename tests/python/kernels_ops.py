"""Python loads Sculpt's op library and its operators match torch's own.

Usage: kernels_ops.py <path to libsculpt_kernels.so>
torch.ops.load_library(path) must expose torch.ops.sculpt.fake_quant and
torch.ops.sculpt.bsr_linear (with autograd); each is compared against PyTorch on fresh random
inputs. Exit 0 when all match, 1 otherwise.
"""
import math
import sys

import torch

torch.ops.load_library(sys.argv[1])
torch.manual_seed(0)
failures = []


def check(name, ok):
    print(("ok   " if ok else "FAIL ") + name)
    if not ok:
        failures.append(name)


# fake_quant per channel == torch.fake_quantize_per_channel_affine, forward and STE backward.
x = (torch.randn(64, 33) * 3).requires_grad_()
scale = torch.rand(64) * 0.1 + 0.02
zp = torch.randint(0, 256, (64,)).float()
y_ref = torch.fake_quantize_per_channel_affine(x, scale, zp.int(), 0, 0, 255)
w = torch.randn_like(y_ref)
(gx_ref,) = torch.autograd.grad((y_ref * w).sum(), x)
y = torch.ops.sculpt.fake_quant(x, scale, zp, 0, 0, 255)
(gx,) = torch.autograd.grad((y * w).sum(), x)
check("fake_quant per channel forward", (y - y_ref).abs().max().item() <= 1e-6)
check("fake_quant per channel STE backward", (gx - gx_ref).abs().max().item() <= 1e-6)

# Per tensor, learned scale and zero point == torch._fake_quantize_learnable_per_tensor_affine.
g = 1.0 / math.sqrt(x.numel() * 15)
s_a = torch.tensor([0.3], requires_grad=True)
z_a = torch.tensor([4.0], requires_grad=True)
s_b = s_a.detach().clone().requires_grad_()
z_b = z_a.detach().clone().requires_grad_()
ya = torch._fake_quantize_learnable_per_tensor_affine(x, s_a, z_a, 0, 15, g)
yb = torch.ops.sculpt.fake_quant(x, s_b, z_b, None, 0, 15, g)
ga = torch.autograd.grad((ya * w).sum(), [x, s_a, z_a])
gb = torch.autograd.grad((yb * w).sum(), [x, s_b, z_b])
check("fake_quant LSQ forward", (ya - yb).abs().max().item() <= 1e-6)
check("fake_quant LSQ grad x", (ga[0] - gb[0]).abs().max().item() <= 1e-6)
check("fake_quant LSQ grad scale", torch.allclose(ga[1], gb[1], rtol=1e-4, atol=1e-5))
check("fake_quant LSQ grad zero point", torch.allclose(ga[2], gb[2], rtol=1e-4, atol=1e-5))

# bsr_linear == dense linear with the masked weight; gradients for x, kept blocks and bias.
b = 16
keep = torch.rand(96 // b, 128 // b) < 0.4
mask = keep.repeat_interleave(b, 0).repeat_interleave(b, 1)
weight = torch.randn(96, 128) * mask
crow, col, values = torch.ops.sculpt.bsr_from_dense(weight, b)
check("bsr_from_dense agrees with torch's to_sparse_bsr",
      torch.equal(crow, weight.to_sparse_bsr(b).crow_indices()) and
      torch.equal(col, weight.to_sparse_bsr(b).col_indices()))
xin = torch.randn(37, 128, requires_grad=True)
bias = torch.randn(96, requires_grad=True)
values = values.clone().requires_grad_()
out = torch.ops.sculpt.bsr_linear(xin, crow, col, values, bias, False)
wd = weight.clone().requires_grad_()
ref = torch.nn.functional.linear(xin, wd, bias)
check("bsr_linear forward", torch.allclose(out, ref, rtol=1e-5, atol=1e-5))
go = torch.randn_like(ref)
gx, gv, gb_ = torch.autograd.grad((out * go).sum(), [xin, values, bias])
rx, rw, rb = torch.autograd.grad((ref * go).sum(), [xin, wd, bias])
rv = torch.stack(  # the kept blocks of the dense weight's gradient, row-major
    [rw[r * b:(r + 1) * b, c * b:(c + 1) * b]
     for r in range(96 // b) for c in range(128 // b) if keep[r, c]])
check("bsr_linear grad x", torch.allclose(gx, rx, rtol=1e-4, atol=1e-4))
check("bsr_linear grad kept blocks", torch.allclose(gv, rv, rtol=1e-4, atol=1e-4))
check("bsr_linear grad bias", torch.allclose(gb_, rb, rtol=1e-5, atol=1e-5))

# The same operators on a GPU when there is one (scripts/gpu_check.sh runs this there).
if torch.cuda.is_available():
    xc = (torch.randn(256, 1000, device="cuda") * 3).requires_grad_()
    sc = torch.rand(256, device="cuda") * 0.1 + 0.02
    zc = torch.randint(0, 256, (256,), device="cuda").float()
    yr = torch.fake_quantize_per_channel_affine(xc, sc, zc.int(), 0, 0, 255)
    yo = torch.ops.sculpt.fake_quant(xc, sc, zc, 0, 0, 255)
    check("cuda fake_quant per channel forward", (yr - yo).abs().max().item() <= 1e-6)
    wc = torch.randn_like(yr)
    gr, = torch.autograd.grad((yr * wc).sum(), xc)
    go_, = torch.autograd.grad((yo * wc).sum(), xc)
    check("cuda fake_quant STE backward", (gr - go_).abs().max().item() <= 1e-6)
    for dt, tol in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2)):
        wcu = (weight.cuda() * 0.1).to(dt)
        cr, cc, cv = torch.ops.sculpt.bsr_from_dense(wcu, b)
        xcu = torch.randn(300, 128, device="cuda", dtype=dt)
        got = torch.ops.sculpt.bsr_linear(xcu, cr, cc, cv, None, False).double()
        ref = xcu.double() @ wcu.double().t()
        err = ((got - ref).norm() / ref.norm()).item()
        check(f"cuda bsr_linear {dt} (rel. error {err:.1e})", err < tol)
else:
    print("skip cuda checks: no GPU")

sys.exit(1 if failures else 0)
