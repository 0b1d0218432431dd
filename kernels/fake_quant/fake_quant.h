// Fused fake quantization, the operator sculpt::fake_quant (CPU and CUDA, with autograd):
//   y = (clamp(nearbyint(x * (1/s)) + z, qmin, qmax) - z) * s
// per tensor (axis = nullopt, one scale) or per channel along `axis` (scale [x.size(axis)]).
// x: float32, float64, bfloat16 or float16 (computed in float, double for float64), y in x's
// dtype. scale / zero_point: float tensors on x's device; the zero point is rounded and clamped
// to [qmin, qmax] as ATen's learnable fake-quant ops do.
// Backward, one pass: dx by the straight-through estimator (dy where qmin <= q <= qmax, else 0);
// when scale (zero_point) requires grad, LSQ's gradients (Esser et al. 2020; LSQ+ for the zero
// point) reduced per tensor / per channel and multiplied by grad_factor (LSQ's g):
//   d/ds = round(x/s) - x/s inside the grid, qmin - z below, qmax - z above;
//   d/dz = 0 inside, -s outside.
// Python: torch.ops.load_library(<libsculpt_kernels.so>); torch.ops.sculpt.fake_quant(...).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace sculpt::kernels {

at::Tensor fake_quant(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point,
                      std::optional<int64_t> axis, int64_t qmin, int64_t qmax,
                      double grad_factor = 1.0);

// The backward operator (sculpt::fake_quant_backward): (dx, dscale, dzero_point); dscale / dzp
// are undefined unless asked for, in scale's dtype and shape, already times grad_factor.
std::tuple<at::Tensor, at::Tensor, at::Tensor> fake_quant_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& scale,
    const at::Tensor& zero_point, std::optional<int64_t> axis, int64_t qmin, int64_t qmax,
    double grad_factor, bool need_scale_grad, bool need_zero_point_grad);

// Plain-ATen references (the tests' oracle): the same formulas as composite ATen ops.
at::Tensor fake_quant_ref(const at::Tensor& x, const at::Tensor& scale,
                          const at::Tensor& zero_point, std::optional<int64_t> axis, int64_t qmin,
                          int64_t qmax);
std::tuple<at::Tensor, at::Tensor, at::Tensor> fake_quant_backward_ref(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& scale,
    const at::Tensor& zero_point, std::optional<int64_t> axis, int64_t qmin, int64_t qmax,
    double grad_factor);

}  // namespace sculpt::kernels
