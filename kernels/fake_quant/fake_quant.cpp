// sculpt::fake_quant and sculpt::fake_quant_backward: argument checks, the [outer, channels,
// inner] layout, the CPU / CUDA kernels and the autograd function that ties them together.
#include "kernels/fake_quant/fake_quant.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <ATen/ops/clamp.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/round.h>
#include <ATen/ops/zeros.h>

#include "kernels/fake_quant/fake_quant_impl.h"

namespace sculpt::kernels {

namespace {

struct Prepared {
  fq::Layout layout;
  at::Tensor x, scale, zp;  // x contiguous; scale, zp [channels] in the compute dtype, zp rounded and clamped
};

Prepared prepare(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point,
                 std::optional<int64_t> axis, int64_t qmin, int64_t qmax) {
  TORCH_CHECK(at::isFloatingType(x.scalar_type()),
              "sculpt::fake_quant: x must be float32, float64, bfloat16 or float16, got ",
              x.scalar_type());
  TORCH_CHECK(qmin < qmax, "sculpt::fake_quant: quant_min ", qmin, " must be < quant_max ", qmax);
  TORCH_CHECK(at::isFloatingType(scale.scalar_type()) && at::isFloatingType(zero_point.scalar_type()),
              "sculpt::fake_quant: scale and zero_point must be floating point tensors");
  TORCH_CHECK(scale.device() == x.device() && zero_point.device() == x.device(),
              "sculpt::fake_quant: x, scale and zero_point must be on one device (x on ",
              x.device(), ", scale on ", scale.device(), ", zero_point on ", zero_point.device(), ")");
  Prepared p;
  p.layout.qmin = qmin;
  p.layout.qmax = qmax;
  p.x = x.contiguous();
  p.layout.inner = x.numel();
  if (axis) {
    const int64_t rank = x.dim();
    TORCH_CHECK(rank > 0 && *axis >= -rank && *axis < rank, "sculpt::fake_quant: axis ", *axis,
                " is out of range for a tensor of rank ", rank);
    const int64_t a = *axis < 0 ? *axis + rank : *axis;
    p.layout.channels = x.size(a);
    p.layout.outer = 1;
    for (int64_t d = 0; d < a; ++d) p.layout.outer *= x.size(d);
    p.layout.inner = 1;
    for (int64_t d = a + 1; d < rank; ++d) p.layout.inner *= x.size(d);
  }
  TORCH_CHECK(scale.numel() == p.layout.channels && zero_point.numel() == p.layout.channels,
              "sculpt::fake_quant: ", axis ? "per-channel" : "per-tensor", " quantization needs ",
              p.layout.channels, " scale(s) and zero point(s), got ", scale.numel(), " and ",
              zero_point.numel());
  const auto ct = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  p.scale = scale.detach().to(ct).contiguous().reshape({-1});
  p.zp = at::clamp(at::round(zero_point.detach().to(ct)), qmin, qmax).contiguous().reshape({-1});
  return p;
}

at::Tensor fake_quant_impl(const at::Tensor& x, const at::Tensor& scale,
                           const at::Tensor& zero_point, std::optional<int64_t> axis, int64_t qmin,
                           int64_t qmax, double /*grad_factor*/) {
  const Prepared p = prepare(x, scale, zero_point, axis, qmin, qmax);
  at::Tensor y = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  if (p.x.numel() == 0) return y;
  if (p.x.is_cuda()) {
#ifdef SCULPT_WITH_CUDA
    fq::forward_cuda(p.x, p.scale, p.zp, p.layout, y);
    return y;
#else
    TORCH_CHECK(false, "sculpt::fake_quant: Sculpt's kernels were built without CUDA");
#endif
  }
  TORCH_CHECK(p.x.is_cpu(), "sculpt::fake_quant: unsupported device ", p.x.device());
  SCULPT_CPU_CALL(fq, forward, p.x, p.scale, p.zp, p.layout, y);
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fake_quant_backward_impl(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& scale,
    const at::Tensor& zero_point, std::optional<int64_t> axis, int64_t qmin, int64_t qmax,
    double grad_factor, bool need_scale, bool need_zp) {
  const Prepared p = prepare(x, scale, zero_point, axis, qmin, qmax);
  TORCH_CHECK(grad.sizes() == x.sizes() && grad.device() == x.device(),
              "sculpt::fake_quant_backward: grad ", grad.sizes(), " does not match x ", x.sizes());
  const at::Tensor dy = grad.to(x.scalar_type()).contiguous();
  at::Tensor dx = at::empty_like(p.x, at::MemoryFormat::Contiguous);
  const bool lsq = need_scale || need_zp;
  at::Tensor ds, dz;
  if (p.x.is_cuda()) {
#ifdef SCULPT_WITH_CUDA
    if (lsq) {
      ds = at::zeros({p.layout.channels}, p.scale.options());
      dz = at::zeros({p.layout.channels}, p.scale.options());
    }
    if (p.x.numel() > 0) fq::backward_cuda(dy, p.x, p.scale, p.zp, p.layout, dx, ds, dz);
#else
    TORCH_CHECK(false, "sculpt::fake_quant_backward: Sculpt's kernels were built without CUDA");
#endif
  } else {
    TORCH_CHECK(p.x.is_cpu(), "sculpt::fake_quant_backward: unsupported device ", p.x.device());
    if (lsq) {
      ds = at::zeros({p.layout.channels}, p.scale.options().dtype(at::kDouble));
      dz = at::zeros({p.layout.channels}, p.scale.options().dtype(at::kDouble));
    }
    if (p.x.numel() > 0)
      SCULPT_CPU_CALL(fq, backward, dy, p.x, p.scale, p.zp, p.layout, dx,
                      lsq ? ds.data_ptr<double>() : nullptr, lsq ? dz.data_ptr<double>() : nullptr);
  }
  auto finish = [&](const at::Tensor& g, const at::Tensor& like, bool need) {
    return need ? g.mul(grad_factor).to(like.scalar_type()).reshape(like.sizes()) : at::Tensor();
  };
  return {dx.view(x.sizes()), finish(ds, scale, need_scale), finish(dz, zero_point, need_zp)};
}

const c10::TypedOperatorHandle<decltype(fake_quant_impl)>& fake_quant_op() {
  static const auto op = c10::Dispatcher::singleton()
                              .findSchemaOrThrow("sculpt::fake_quant", "")
                              .typed<decltype(fake_quant_impl)>();
  return op;
}

const c10::TypedOperatorHandle<decltype(fake_quant_backward_impl)>& fake_quant_backward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("sculpt::fake_quant_backward", "")
                             .typed<decltype(fake_quant_backward_impl)>();
  return op;
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class FakeQuantFunction : public torch::autograd::Function<FakeQuantFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& scale,
                            const at::Tensor& zero_point, std::optional<int64_t> axis,
                            int64_t qmin, int64_t qmax, double grad_factor) {
    ctx->save_for_backward({x, scale, zero_point});
    ctx->saved_data["axis"] = axis ? c10::IValue(*axis) : c10::IValue();
    ctx->saved_data["qmin"] = qmin;
    ctx->saved_data["qmax"] = qmax;
    ctx->saved_data["grad_factor"] = grad_factor;
    at::AutoDispatchBelowADInplaceOrView guard;
    return fake_quant_op().call(x, scale, zero_point, axis, qmin, qmax, grad_factor);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const c10::IValue& a = ctx->saved_data["axis"];
    const std::optional<int64_t> axis = a.isNone() ? std::nullopt : std::optional<int64_t>(a.toInt());
    auto [dx, ds, dz] = fake_quant_backward_op().call(
        grads[0], saved[0], saved[1], saved[2], axis, ctx->saved_data["qmin"].toInt(),
        ctx->saved_data["qmax"].toInt(), ctx->saved_data["grad_factor"].toDouble(),
        ctx->needs_input_grad(1), ctx->needs_input_grad(2));
    return {dx, ds, dz, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor fake_quant_autograd(const at::Tensor& x, const at::Tensor& scale,
                               const at::Tensor& zero_point, std::optional<int64_t> axis,
                               int64_t qmin, int64_t qmax, double grad_factor) {
  return FakeQuantFunction::apply(x, scale, zero_point, axis, qmin, qmax, grad_factor);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(sculpt, m) {
  m.def("fake_quant(Tensor x, Tensor scale, Tensor zero_point, int? axis, int quant_min, "
        "int quant_max, float grad_factor=1.0) -> Tensor");
  m.def("fake_quant_backward(Tensor grad, Tensor x, Tensor scale, Tensor zero_point, int? axis, "
        "int quant_min, int quant_max, float grad_factor, bool need_scale_grad, "
        "bool need_zero_point_grad) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(sculpt, CPU, m) {
  m.impl("fake_quant", &fake_quant_impl);
  m.impl("fake_quant_backward", &fake_quant_backward_impl);
}

#ifdef SCULPT_WITH_CUDA
TORCH_LIBRARY_IMPL(sculpt, CUDA, m) {
  m.impl("fake_quant", &fake_quant_impl);
  m.impl("fake_quant_backward", &fake_quant_backward_impl);
}
#endif

TORCH_LIBRARY_IMPL(sculpt, Autograd, m) {
  m.impl("fake_quant", &fake_quant_autograd);
}

at::Tensor fake_quant(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point,
                      std::optional<int64_t> axis, int64_t qmin, int64_t qmax,
                      double grad_factor) {
  return fake_quant_op().call(x, scale, zero_point, axis, qmin, qmax, grad_factor);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fake_quant_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& scale,
    const at::Tensor& zero_point, std::optional<int64_t> axis, int64_t qmin, int64_t qmax,
    double grad_factor, bool need_scale_grad, bool need_zero_point_grad) {
  return fake_quant_backward_op().call(grad, x, scale, zero_point, axis, qmin, qmax, grad_factor,
                                       need_scale_grad, need_zero_point_grad);
}

}  // namespace sculpt::kernels
