// Plain-ATen fake quantization: the oracle the kernels are tested against. Same conventions
// (float arithmetic, double for double inputs; multiply by the reciprocal; round half to even;
// zero point rounded and clamped), written as composite ops with no shared code.
#include <ATen/ATen.h>

#include "kernels/fake_quant/fake_quant.h"

namespace sculpt::kernels {

namespace {
struct RefParams {
  at::Tensor xc, s, z;  // xc: x in the compute dtype; s, z broadcastable against it
};

RefParams ref_params(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point,
                     std::optional<int64_t> axis, int64_t qmin, int64_t qmax) {
  const auto ct = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  if (axis) shape[static_cast<size_t>(*axis < 0 ? *axis + x.dim() : *axis)] = -1;
  at::Tensor s = scale.detach().to(ct).reshape(shape);
  at::Tensor z = zero_point.detach().to(ct).round().clamp(qmin, qmax).reshape(shape);
  return {x.detach().to(ct), s, z};
}
}  // namespace

at::Tensor fake_quant_ref(const at::Tensor& x, const at::Tensor& scale,
                          const at::Tensor& zero_point, std::optional<int64_t> axis, int64_t qmin,
                          int64_t qmax) {
  auto p = ref_params(x, scale, zero_point, axis, qmin, qmax);
  at::Tensor q = at::round(p.xc * at::reciprocal(p.s)) + p.z;
  return ((q.clamp(qmin, qmax) - p.z) * p.s).to(x.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fake_quant_backward_ref(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& scale,
    const at::Tensor& zero_point, std::optional<int64_t> axis, int64_t qmin, int64_t qmax,
    double grad_factor) {
  auto p = ref_params(x, scale, zero_point, axis, qmin, qmax);
  const at::Tensor dy = grad.to(p.xc.scalar_type());
  const at::Tensor t = p.xc * at::reciprocal(p.s);
  const at::Tensor q = at::round(t) + p.z;
  const at::Tensor below = q < qmin, above = q > qmax, inside = at::logical_not(below | above);
  const at::Tensor dx = at::where(inside, dy, at::zeros_like(dy));
  at::Tensor ds = at::where(below, qmin - p.z, at::where(above, qmax - p.z, at::round(t) - t)) * dy;
  at::Tensor dz = at::where(inside, at::zeros_like(dy), -dy * p.s);
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (!axis || d != (*axis < 0 ? *axis + x.dim() : *axis)) dims.push_back(d);
  auto reduce = [&](const at::Tensor& g) {
    at::Tensor r = dims.empty() ? g : g.to(at::kDouble).sum(dims);
    return (r.to(at::kDouble) * grad_factor).to(scale.scalar_type()).reshape(scale.sizes());
  };
  return {dx.to(x.scalar_type()), reduce(ds), reduce(dz)};
}

}  // namespace sculpt::kernels
