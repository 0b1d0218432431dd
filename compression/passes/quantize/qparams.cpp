// The quantization numerics. Fake quantization (and LSQ's gradient) is the fused operator
// sculpt::fake_quant of kernels/ (CPU and CUDA, one pass forward and one backward).
#include "compression/passes/quantize/qparams.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "kernels/fake_quant/fake_quant.h"

namespace sculpt::quant {

namespace {
constexpr double kMinScale = 1.1920928955078125e-07;  // float eps, as PyTorch's observers


// Rows and K of the per-group view.
std::pair<int64_t, int64_t> rows_k(at::IntArrayRef shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  const int64_t rows = shape.empty() ? 1 : shape[0];
  return {rows, rows > 0 ? n / rows : 0};
}
}  // namespace

int64_t QSpec::qmin() const {
  if (symmetric && is_signed) return -((int64_t{1} << (bits - 1)) - 1);
  return 0;
}

int64_t QSpec::qmax() const {
  if (symmetric && is_signed) return (int64_t{1} << (bits - 1)) - 1;
  return (int64_t{1} << bits) - 1;
}

std::string QSpec::describe() const {
  std::string s = "int" + std::to_string(bits) + (symmetric ? " sym" : " asym");
  if (symmetric && !is_signed) s += " unsigned";
  switch (granularity) {
    case Granularity::per_tensor: return s + " per_tensor";
    case Granularity::per_channel: return s + " per_channel(axis " + std::to_string(axis) + ")";
    case Granularity::per_group: return s + " per_group(" + std::to_string(group_size) + ")";
  }
  return s;
}

void QSpec::check(at::IntArrayRef shape, const std::string& where) const {
  SCULPT_CHECK(bits >= 2 && bits <= 8, where, ": bits ", bits, " is outside 2..8");
  const auto rank = static_cast<int64_t>(shape.size());
  if (granularity == Granularity::per_channel)
    SCULPT_CHECK(axis >= 0 && axis < rank, where, ": axis ", axis,
                 " is beyond the tensor's rank (shape ", shape, ", axes 0..", rank - 1, ")");
  if (granularity == Granularity::per_group) {
    SCULPT_CHECK(group_size > 0, where, ": group_size must be > 0 for per_group");
    SCULPT_CHECK(rank >= 2, where, ": per_group needs a tensor of rank >= 2, got shape ", shape);
    const auto [rows, k] = rows_k(shape);
    SCULPT_CHECK(k % group_size == 0, where, ": group_size ", group_size,
                 " does not divide the input dimension ", k, " (shape ", shape, ")");
  }
}

at::Tensor grouped_view(const at::Tensor& x, const QSpec& spec) {
  if (spec.granularity != Granularity::per_group) return x;
  const auto [rows, k] = rows_k(x.sizes());
  return x.reshape({rows, k / spec.group_size, spec.group_size});
}

std::vector<int64_t> qparam_shape(at::IntArrayRef shape, const QSpec& spec) {
  switch (spec.granularity) {
    case Granularity::per_tensor: return {};
    case Granularity::per_channel: {
      std::vector<int64_t> s(shape.size(), 1);
      s[spec.axis] = shape[spec.axis];
      return s;
    }
    case Granularity::per_group: {
      const auto [rows, k] = rows_k(shape);
      return {rows, k / spec.group_size, 1};
    }
  }
  return {};
}

int64_t elements_per_scale(at::IntArrayRef shape, const QSpec& spec) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  switch (spec.granularity) {
    case Granularity::per_tensor: return n;
    case Granularity::per_channel: return shape[spec.axis] ? n / shape[spec.axis] : 0;
    case Granularity::per_group: return spec.group_size;
  }
  return n;
}

std::pair<at::Tensor, at::Tensor> reduce_min_max(const at::Tensor& x, const QSpec& spec) {
  const at::Tensor v = grouped_view(x.detach(), spec).to(at::kFloat);
  if (spec.granularity == Granularity::per_tensor) {
    auto [lo, hi] = at::aminmax(v);
    return {lo, hi};
  }
  std::vector<int64_t> dims;
  if (spec.granularity == Granularity::per_group) {
    dims = {2};
  } else {
    for (int64_t d = 0; d < v.dim(); ++d)
      if (d != spec.axis) dims.push_back(d);
  }
  if (dims.empty()) return {v.clone(), v.clone()};
  if (spec.granularity == Granularity::per_channel && spec.axis == 0) {
    auto [lo, hi] = at::aminmax(v.reshape({v.size(0), -1}), 1);
    const auto shape = qparam_shape(x.sizes(), spec);
    return {lo.reshape(shape), hi.reshape(shape)};
  }
  return {at::amin(v, dims, /*keepdim=*/true), at::amax(v, dims, /*keepdim=*/true)};
}

void qparams_of_range(float lo_in, float hi_in, const QSpec& spec, float& scale, float& zp) {
  // The tensor path's arithmetic on the host, in float.
  const auto qmin = static_cast<float>(spec.qmin()), qmax = static_cast<float>(spec.qmax());
  const float lo = std::min(lo_in, 0.0f), hi = std::max(hi_in, 0.0f);
  zp = 0;
  if (spec.symmetric) {
    scale = std::max((spec.is_signed ? std::max(-lo, hi) : hi) / qmax, static_cast<float>(kMinScale));
  } else {
    scale = std::max((hi - lo) / (qmax - qmin), static_cast<float>(kMinScale));
    zp = std::clamp(qmin - std::nearbyint(lo / scale), qmin, qmax);
  }
}

QParams qparams_from_range(const at::Tensor& lo_in, const at::Tensor& hi_in, const QSpec& spec) {
  if (lo_in.dim() == 0 && lo_in.device().is_cpu()) {
    float scale, zp;
    qparams_of_range(lo_in.item<float>(), hi_in.item<float>(), spec, scale, zp);
    return QParams{spec, at::scalar_tensor(scale, at::kFloat), at::scalar_tensor(zp, at::kFloat)};
  }
  at::Tensor lo = at::clamp_max(lo_in.to(at::kFloat), 0.0);
  at::Tensor hi = at::clamp_min(hi_in.to(at::kFloat), 0.0);
  const auto qmin = static_cast<double>(spec.qmin()), qmax = static_cast<double>(spec.qmax());
  QParams qp;
  qp.spec = spec;
  if (spec.symmetric) {
    const at::Tensor amax = spec.is_signed ? at::maximum(-lo, hi) : hi;
    qp.scale = at::clamp_min(amax / qmax, kMinScale);
    qp.zero_point = at::zeros_like(qp.scale);
  } else {
    qp.scale = at::clamp_min((hi - lo) / (qmax - qmin), kMinScale);
    qp.zero_point = at::clamp(qmin - at::round(lo / qp.scale), qmin, qmax);
  }
  return qp;
}

namespace {

// round(x * (1/s)) + z: the unclamped grid value.
at::Tensor grid_value(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zp) {
  return at::round(x * at::reciprocal(scale)).add_(zp);
}

// The operator's view of a (grouped) tensor v whose scale broadcasts against it: per tensor
// (one scale), per channel (one dim of the scale > 1: that axis) or per row block (the per-group
// view: leading dims of the scale, trailing 1s; flattened to channels of axis 0).
struct OpView {
  at::Tensor x;
  std::optional<int64_t> axis;
};

OpView op_view(const at::Tensor& v, const at::Tensor& scale) {
  if (scale.numel() == 1) return {v, std::nullopt};
  std::vector<int64_t> wide;
  for (int64_t d = 0; d < scale.dim(); ++d)
    if (scale.size(d) > 1) wide.push_back(d);
  if (wide.size() == 1 && scale.dim() == v.dim()) return {v, wide[0]};
  const int64_t channels = scale.numel();
  SCULPT_ASSERT(wide.front() == 0 && v.numel() % channels == 0, "scale ", scale.sizes(),
                " is not a per-tensor, per-channel or per-group layout of ", v.sizes());
  return {v.reshape({channels, v.numel() / channels}), 0};
}

}  // namespace

at::Tensor fake_quantize(const at::Tensor& x, const QParams& qp) {
  const at::Tensor v = grouped_view(x, qp.spec);
  const OpView o = op_view(v, qp.scale);
  return kernels::fake_quant(o.x, qp.scale.to(v.device()).reshape({-1}),
                             qp.zero_point.to(v.device()).reshape({-1}), o.axis,
                             qp.spec.qmin(), qp.spec.qmax())
      .reshape(x.sizes());
}

at::Tensor fake_quantize_lsq(const at::Tensor& x, const at::Tensor& scale,
                             const at::Tensor& zero_point, const QSpec& spec, double grad_scale) {
  const at::Tensor v = grouped_view(x, spec);
  const OpView o = op_view(v, scale);
  // The zero point is fixed (no gradient); the scale's gradient is LSQ's, times grad_scale.
  return kernels::fake_quant(o.x, scale.to(v.device()).reshape({-1}),
                             zero_point.detach().to(v.device()).reshape({-1}), o.axis,
                             spec.qmin(), spec.qmax(), grad_scale)
      .reshape(x.sizes());
}

at::Tensor quantize_to_int(const at::Tensor& x, const QParams& qp) {
  at::NoGradGuard no_grad;
  const at::Tensor v = grouped_view(x.detach().to(at::kFloat), qp.spec);
  return grid_value(v, qp.scale, qp.zero_point)
      .clamp_(qp.spec.qmin(), qp.spec.qmax())
      .to(at::kInt)
      .reshape(x.sizes());
}

at::Tensor dequantize(const at::Tensor& q, const QParams& qp, at::IntArrayRef shape) {
  const at::Tensor v = grouped_view(q.to(at::kFloat).reshape(shape), qp.spec);
  return ((v - qp.zero_point) * qp.scale).reshape(shape);
}

double quantization_snr_db(const at::Tensor& x, const QParams& qp) {
  at::NoGradGuard no_grad;
  const at::Tensor xf = x.detach().to(at::kFloat);
  const double signal = xf.pow(2).mean().item<double>();
  const double noise = (xf - fake_quantize(xf, qp)).pow(2).mean().item<double>();
  if (noise == 0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(signal / noise);
}

}  // namespace sculpt::quant
