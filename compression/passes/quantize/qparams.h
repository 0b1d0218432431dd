// Quantization numerics, the one source of truth (issue 6): the fake-quant transforms, the
// observers, the exporter and the int8 runtime all use QSpec/QParams and these functions, so
// what training simulates and what the exported model computes cannot drift apart.
//
// Integer grids (b bits):
//   symmetric, signed     q in [-(2^(b-1) - 1), 2^(b-1) - 1], zero point 0 (narrow range)
//   symmetric, unsigned   q in [0, 2^b - 1], zero point 0 (inputs known to be >= 0)
//   asymmetric            q in [0, 2^b - 1], zero point in that range (PyTorch's quint8 grid)
// x -> q = clamp(round(x * (1/s)) + z, qmin, qmax), round half to even; x_hat = (q - z) * s.
// Granularity: per tensor; per channel along any `axis`; per group of `group_size` consecutive
// elements along the input dimension (dim 1, with the remaining dims flattened into it, so a
// conv's groups run along its GEMM K = in * kh * kw).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "core/config/section.h"

namespace sculpt::quant {

enum class Granularity { per_tensor, per_channel, per_group };
inline const config::Spellings<Granularity> kGranularities = {
    {Granularity::per_tensor, "per_tensor"},
    {Granularity::per_channel, "per_channel"},
    {Granularity::per_group, "per_group"}};

struct QSpec {
  int bits = 8;             // 2..8
  bool symmetric = true;
  bool is_signed = true;    // symmetric grids only; asymmetric grids are unsigned
  Granularity granularity = Granularity::per_tensor;
  int64_t axis = 0;         // per_channel
  int64_t group_size = 0;   // per_group
  int64_t qmin() const;
  int64_t qmax() const;
  std::string describe() const;  // "int8 sym per_channel(0)", "int4 sym per_group(32)"
  // Checks bits, axis and group size against a tensor shape; UserError naming `where`.
  void check(at::IntArrayRef shape, const std::string& where) const;
};

// The per-tensor / per-channel / per-group view of x in which scale and zero point broadcast:
// x itself (per tensor, per channel) or x reshaped to [rows, K / g, g] (per group).
at::Tensor grouped_view(const at::Tensor& x, const QSpec& spec);
// Shape of scale/zero_point in that view (keepdim reductions): [] / [1,..,C,..,1] / [rows, K/g, 1].
std::vector<int64_t> qparam_shape(at::IntArrayRef x_shape, const QSpec& spec);
// Number of elements that share one scale (LSQ's N).
int64_t elements_per_scale(at::IntArrayRef x_shape, const QSpec& spec);

struct QParams {
  QSpec spec;
  at::Tensor scale;       // float32, qparam_shape
  at::Tensor zero_point;  // float32 holding integers, same shape
  bool defined() const { return scale.defined(); }
};

// Per-view min and max of x (keepdim, qparam_shape).
std::pair<at::Tensor, at::Tensor> reduce_min_max(const at::Tensor& x, const QSpec& spec);
// Scale and zero point that cover [lo, hi] (widened to include 0). Scale >= float eps.
QParams qparams_from_range(const at::Tensor& lo, const at::Tensor& hi, const QSpec& spec);
// The same for one range, on the host (bit for bit the tensor path's float arithmetic).
void qparams_of_range(float lo, float hi, const QSpec& spec, float& scale, float& zero_point);

// Fake quantization, differentiable: straight-through gradient for x inside the grid, zero
// outside (as ATen's fake_quantize_* ops). No gradient reaches scale or zero point.
at::Tensor fake_quantize(const at::Tensor& x, const QParams& qp);
// LSQ (Esser et al. 2020): also the gradient for a learned `scale` (a tensor with requires_grad),
// scaled by grad_scale (1/sqrt(N * qmax)):  d x_hat / d s = round(x/s) - x/s inside the grid,
// qmin - z below, qmax - z above. The zero point is fixed.
at::Tensor fake_quantize_lsq(const at::Tensor& x, const at::Tensor& scale,
                             const at::Tensor& zero_point, const QSpec& spec, double grad_scale);

// The integer grid values of x (int32 tensor, x's shape) and back.
at::Tensor quantize_to_int(const at::Tensor& x, const QParams& qp);
at::Tensor dequantize(const at::Tensor& q, const QParams& qp, at::IntArrayRef shape);

// Quantization SNR in dB: 10 log10(E[x^2] / E[(x - Q(x))^2]); +inf when exact.
double quantization_snr_db(const at::Tensor& x, const QParams& qp);

}  // namespace sculpt::quant
