// Plain ATen implementation of the quantization numerics (ATen's fused fake-quant kernels for
// float tensors, the composite formula otherwise). The fused kernel of the kernels issue
// will replace fake_quantize / fake_quantize_lsq behind these same functions.
#include "compression/passes/quantize/qparams.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "core/error.h"

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
  return {at::amin(v, dims, /*keepdim=*/true), at::amax(v, dims, /*keepdim=*/true)};
}

QParams qparams_from_range(const at::Tensor& lo_in, const at::Tensor& hi_in, const QSpec& spec) {
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

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// round(x * (1/s)) + z: the unclamped grid value.
at::Tensor grid_value(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zp) {
  return at::round(x * at::reciprocal(scale)).add_(zp);
}

// Output and straight-through mask. Float tensors go through ATen's fused fake-quant kernels
// (one pass, same formula: round(x * (1/s)) + z, clamped), per tensor or per channel — a
// per-group view is per channel of its rows; other dtypes through the composite formula.
std::pair<at::Tensor, at::Tensor> fq_with_mask(const at::Tensor& v, const at::Tensor& scale,
                                               const at::Tensor& zp, int64_t qmin, int64_t qmax) {
  if (v.scalar_type() == at::kFloat && scale.scalar_type() == at::kFloat) {
    if (scale.numel() == 1) {
      static const at::Tensor enabled = at::ones({1}, at::kLong);
      auto [out, mask] = at::_fake_quantize_per_tensor_affine_cachemask_tensor_qparams(
          v, scale.reshape({1}), zp.reshape({1}).to(at::kInt),
          enabled.to(v.device()), qmin, qmax);
      return {out, mask};
    }
    std::vector<int64_t> wide;
    for (int64_t d = 0; d < scale.dim(); ++d)
      if (scale.size(d) > 1) wide.push_back(d);
    const bool trailing_ones = !wide.empty() && wide.back() + 1 <= scale.dim() &&
                               [&] {
                                 for (int64_t d = wide.back() + 1; d < scale.dim(); ++d)
                                   if (scale.size(d) != 1) return false;
                                 return true;
                               }();
    if (wide.size() == 1) {
      auto [out, mask] = at::fake_quantize_per_channel_affine_cachemask(
          v, scale.flatten(), zp.flatten().to(at::kInt), wide[0], qmin, qmax);
      return {out, mask};
    }
    if (trailing_ones && wide.front() == 0 && wide.back() + 1 == static_cast<int64_t>(wide.size())) {
      // [a, b, ..., 1]: rows of the leading dims, each its own channel.
      const int64_t rows = scale.numel();
      auto [out, mask] = at::fake_quantize_per_channel_affine_cachemask(
          v.reshape({rows, -1}), scale.flatten(), zp.flatten().to(at::kInt), 0, qmin, qmax);
      return {out.reshape(v.sizes()), mask.reshape(v.sizes())};
    }
  }
  at::Tensor g = grid_value(v, scale, zp);
  at::Tensor mask = g.ge(qmin).logical_and_(g.le(qmax));
  return {g.clamp_(qmin, qmax).sub_(zp).mul_(scale), mask};
}

class FakeQuantFn : public torch::autograd::Function<FakeQuantFn> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& scale,
                            const at::Tensor& zp, int64_t qmin, int64_t qmax) {
    auto [out, mask] = fq_with_mask(x, scale, zp, qmin, qmax);
    ctx->save_for_backward({mask});
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto mask = ctx->get_saved_variables()[0];
    return {grad[0] * mask, {}, {}, {}, {}};
  }
};

class LsqFn : public torch::autograd::Function<LsqFn> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& scale,
                            const at::Tensor& zp, int64_t qmin, int64_t qmax, double grad_scale) {
    const at::Tensor xs = x * at::reciprocal(scale);
    const at::Tensor r = at::round(xs);
    at::Tensor v = r + zp;
    const at::Tensor below = v.lt(qmin), above = v.gt(qmax);
    // d x_hat / d s per element, before the gradient scale.
    at::Tensor ds = at::where(below, qmin - zp, at::where(above, qmax - zp, r - xs));
    ctx->save_for_backward({below.logical_or(above), ds, scale});
    ctx->saved_data["grad_scale"] = grad_scale;
    return v.clamp_(qmin, qmax).sub_(zp).mul_(scale);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const double g = ctx->saved_data["grad_scale"].toDouble();
    const at::Tensor gx = grad[0].masked_fill(saved[0], 0);
    const at::Tensor gs = at::sum_to(grad[0] * saved[1], saved[2].sizes()) * g;
    return {gx, gs, {}, {}, {}, {}};
  }
};

}  // namespace

at::Tensor fake_quantize(const at::Tensor& x, const QParams& qp) {
  const at::Tensor v = grouped_view(x, qp.spec);
  const at::Tensor scale = qp.scale.to(v.scalar_type()), zp = qp.zero_point.to(v.scalar_type());
  at::Tensor out;
  if (x.requires_grad()) {
    out = FakeQuantFn::apply(v, scale, zp, qp.spec.qmin(), qp.spec.qmax());
  } else {
    at::NoGradGuard no_grad;
    out = fq_with_mask(v, scale, zp, qp.spec.qmin(), qp.spec.qmax()).first;
  }
  return out.reshape(x.sizes());
}

at::Tensor fake_quantize_lsq(const at::Tensor& x, const at::Tensor& scale,
                             const at::Tensor& zero_point, const QSpec& spec, double grad_scale) {
  const at::Tensor v = grouped_view(x, spec);
  return LsqFn::apply(v, scale.to(v.scalar_type()), zero_point.to(v.scalar_type()), spec.qmin(),
                      spec.qmax(), grad_scale)
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
