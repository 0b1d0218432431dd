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
#include <c10/core/Storage.h>

#include <functional>
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

// The fused per-step path of quantization-aware training (CPU, float32; not a dispatcher op, as
// it takes a callback): x seen as `rows` rows of x.numel() / rows contiguous elements (per
// tensor: 1 row; per channel along axis 0; per group: one row per group), row r quantized with
// scale[r] and zero_point[r] (contiguous float32 CPU tensors of `rows` elements).
// With derive: one call per row with the row's min and max (NaN propagates, as at::aminmax),
// which sets the row's scale and zero point (written into scale / zero_point; called from
// several threads when rows > 1); each row is ranged and quantized while it is in cache. Without
// derive: the given qparams. y equals fake_quant(x, scale, zero_point, ...) bit for bit.
// Autograd: the straight-through gradient for x (no gradient for the qparams); when every grid
// value fell inside [qmin, qmax] the backward hands the gradient through without a pass.
// reuse (optional): y's buffer from the previous call; when nothing else refers to it any more
// (its tensor, views and autograd uses are gone) and it has y's size, y is written there (warm
// in cache, no allocation); otherwise y is new and *reuse becomes its buffer.
using RowQParams = std::function<void(int64_t row, float lo, float hi, float& scale, float& zp)>;
at::Tensor fake_quant_rows(const at::Tensor& x, int64_t rows, const at::Tensor& scale,
                           const at::Tensor& zero_point, int64_t qmin, int64_t qmax,
                           const RowQParams* derive = nullptr, c10::Storage* reuse = nullptr);

// Plain-ATen references (the tests' oracle): the same formulas as composite ATen ops.
at::Tensor fake_quant_ref(const at::Tensor& x, const at::Tensor& scale,
                          const at::Tensor& zero_point, std::optional<int64_t> axis, int64_t qmin,
                          int64_t qmax);
std::tuple<at::Tensor, at::Tensor, at::Tensor> fake_quant_backward_ref(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& scale,
    const at::Tensor& zero_point, std::optional<int64_t> axis, int64_t qmin, int64_t qmax,
    double grad_factor);

}  // namespace sculpt::kernels
