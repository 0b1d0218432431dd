// The quantization numerics: a single-pass CPU loop for float tensors, ATen's fused fake-quant
// kernels on CUDA, the composite ATen formula otherwise. The fused kernel of the kernels issue
// will replace fake_quantize / fake_quantize_lsq behind these same functions.
#include "compression/passes/quantize/qparams.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
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
  if (spec.granularity == Granularity::per_channel && spec.axis == 0) {
    auto [lo, hi] = at::aminmax(v.reshape({v.size(0), -1}), 1);
    const auto shape = qparam_shape(x.sizes(), spec);
    return {lo.reshape(shape), hi.reshape(shape)};
  }
  return {at::amin(v, dims, /*keepdim=*/true), at::amax(v, dims, /*keepdim=*/true)};
}

QParams qparams_from_range(const at::Tensor& lo_in, const at::Tensor& hi_in, const QSpec& spec) {
  const auto qmin_d = static_cast<double>(spec.qmin()), qmax_d = static_cast<double>(spec.qmax());
  if (lo_in.dim() == 0 && lo_in.device().is_cpu()) {
    // One range: the same arithmetic on the host, in float as the tensor path computes it.
    const float lo = std::min(lo_in.item<float>(), 0.0f), hi = std::max(hi_in.item<float>(), 0.0f);
    float scale, zp = 0;
    if (spec.symmetric) {
      scale = std::max((spec.is_signed ? std::max(-lo, hi) : hi) / static_cast<float>(qmax_d),
                       static_cast<float>(kMinScale));
    } else {
      scale = std::max((hi - lo) / static_cast<float>(qmax_d - qmin_d), static_cast<float>(kMinScale));
      zp = std::clamp(static_cast<float>(qmin_d) - std::nearbyint(lo / scale),
                      static_cast<float>(qmin_d), static_cast<float>(qmax_d));
    }
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

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// round(x * (1/s)) + z: the unclamped grid value.
at::Tensor grid_value(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zp) {
  return at::round(x * at::reciprocal(scale)).add_(zp);
}

// One pass over a contiguous float CPU tensor seen as [outer, C, inner] with one scale and zero
// point per C (C = 1: per tensor): out = clamp(round(x * (1/s)), qmin - z, qmax - z) * s, which
// equals (clamp(round(x/s) + z, qmin, qmax) - z) * s for integer z, and the mask of values
// inside the grid. Rounds half to even with the 1.5 * 2^23 trick (exact in float for |t| < 2^22;
// t is clamped just outside the grid first, so the mask and the result do not change), which
// vectorizes where nearbyint does not.
std::pair<at::Tensor, at::Tensor> fq_cpu_float(const at::Tensor& v_in, const at::Tensor& scale,
                                               const at::Tensor& zp, int64_t axis, int64_t qmin,
                                               int64_t qmax) {
  const at::Tensor v = v_in.contiguous();
  at::Tensor out = at::empty_like(v);
  at::Tensor mask = at::empty(v.sizes(), v.options().dtype(at::kBool));
  int64_t outer = 1, c = 1, inner = v.numel();
  if (axis >= 0) {
    c = v.size(axis);
    outer = 1;
    for (int64_t d = 0; d < axis; ++d) outer *= v.size(d);
    inner = c ? v.numel() / (outer * c) : 0;
  }
  const at::Tensor s = scale.to(at::kFloat).contiguous().flatten();
  const at::Tensor z = zp.to(at::kFloat).contiguous().flatten();
  const float* x = v.data_ptr<float>();
  const float* sp = s.data_ptr<float>();
  const float* zpp = z.data_ptr<float>();
  float* o = out.data_ptr<float>();
  bool* m = mask.data_ptr<bool>();
  const auto fmin = static_cast<float>(qmin), fmax = static_cast<float>(qmax);
  at::parallel_for(0, outer * c, std::max<int64_t>(1, 32768 / std::max<int64_t>(inner, 1)),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t r = begin; r < end; ++r) {
                       const int64_t ch = r % c;
                       const float sc = sp[ch], inv = 1.0f / sc;
                       const float lo = fmin - zpp[ch], hi = fmax - zpp[ch];
                       const float* xr = x + r * inner;
                       float* orow = o + r * inner;
                       bool* mrow = m + r * inner;
                       for (int64_t i = 0; i < inner; ++i) {
                         float t = std::min(std::max(xr[i] * inv, lo - 1.0f), hi + 1.0f);
                         t = (t + 12582912.0f) - 12582912.0f;
                         mrow[i] = t >= lo && t <= hi;
                         orow[i] = std::min(std::max(t, lo), hi) * sc;
                       }
                     }
                   });
  return {out, mask};
}

// Output and straight-through mask: per tensor, per channel (the one dim where the scale is not
// 1) or per row block (a per-group view: leading dims of the scale, trailing 1s). Float CPU
// tensors take the single pass above, float CUDA tensors ATen's fused fake-quant kernels, other
// dtypes the composite formula.
std::pair<at::Tensor, at::Tensor> fq_with_mask(const at::Tensor& v, const at::Tensor& scale,
                                               const at::Tensor& zp, int64_t qmin, int64_t qmax) {
  if (v.scalar_type() == at::kFloat && scale.scalar_type() == at::kFloat) {
    std::vector<int64_t> wide;
    for (int64_t d = 0; d < scale.dim(); ++d)
      if (scale.size(d) > 1) wide.push_back(d);
    bool rows = !wide.empty() && wide.front() == 0 &&
                wide.back() + 1 == static_cast<int64_t>(wide.size()) && wide.size() > 1;
    for (int64_t d = rows ? wide.back() + 1 : scale.dim(); d < scale.dim(); ++d)
      rows = rows && scale.size(d) == 1;
    const bool per_tensor = scale.numel() == 1;
    if (!per_tensor && wide.size() != 1 && !rows) {
      // Not a layout the kernels know: the composite formula below.
    } else if (v.device().is_cpu()) {
      if (rows) {
        auto [out, mask] = fq_cpu_float(v.reshape({scale.numel(), -1}), scale, zp, 0, qmin, qmax);
        return {out.reshape(v.sizes()), mask.reshape(v.sizes())};
      }
      return fq_cpu_float(v, scale, zp, per_tensor ? -1 : wide[0], qmin, qmax);
    } else if (per_tensor) {
      const at::Tensor enabled = at::ones({1}, v.options().dtype(at::kLong));
      auto [out, mask] = at::_fake_quantize_per_tensor_affine_cachemask_tensor_qparams(
          v, scale.reshape({1}), zp.reshape({1}).to(at::kInt), enabled, qmin, qmax);
      return {out, mask};
    } else {
      const at::Tensor vv = rows ? v.reshape({scale.numel(), -1}) : v;
      auto [out, mask] = at::fake_quantize_per_channel_affine_cachemask(
          vv, scale.flatten(), zp.flatten().to(at::kInt), rows ? 0 : wide[0], qmin, qmax);
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
