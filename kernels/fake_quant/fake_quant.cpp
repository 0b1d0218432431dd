// sculpt::fake_quant and sculpt::fake_quant_backward: argument checks, the [outer, channels,
// inner] layout, the CPU / CUDA kernels and the autograd function that ties them together.
#include "kernels/fake_quant/fake_quant.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/library.h>

#include <ATen/ops/clamp.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/round.h>
#include <ATen/ops/zeros.h>

#include <cmath>

#include "kernels/cuda_entries.h"
#include "kernels/fake_quant/fake_quant_impl.h"

namespace sculpt::kernels {

namespace {

// x as a flat [-1] tensor, without a view when it already is one.
at::Tensor flat(const at::Tensor& x) { return x.dim() == 1 ? x : x.reshape({-1}); }

// The zero point rounded half to even and clamped to [qmin, qmax], contiguous. A CPU tensor that
// already is (the usual case) comes back as it is, without ATen calls.
template <class T>
bool is_prepared(const T* z, int64_t n, int64_t qmin, int64_t qmax) {
  for (int64_t i = 0; i < n; ++i)
    if (!(z[i] == std::nearbyint(z[i]) && z[i] >= static_cast<T>(qmin) && z[i] <= static_cast<T>(qmax)))
      return false;
  return true;
}

at::Tensor prepared_zero_point(const at::Tensor& z, int64_t qmin, int64_t qmax) {
  if (z.is_cpu() && z.is_contiguous()) {
    if (z.scalar_type() == at::kFloat && is_prepared(z.const_data_ptr<float>(), z.numel(), qmin, qmax))
      return z;
    if (z.scalar_type() == at::kDouble && is_prepared(z.const_data_ptr<double>(), z.numel(), qmin, qmax))
      return z;
  }
  return at::clamp(at::round(z), qmin, qmax).contiguous();
}

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
  p.scale = flat(scale.detach().to(ct).contiguous());
  p.zp = flat(prepared_zero_point(zero_point.detach().to(ct), qmin, qmax));
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
    loaded_cuda_entries("sculpt::fake_quant").fq_forward(p.x, p.scale, p.zp, p.layout, y);
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
    if (p.x.numel() > 0)
      loaded_cuda_entries("sculpt::fake_quant_backward")
          .fq_backward(dy, p.x, p.scale, p.zp, p.layout, dx, ds, dz);
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

// The fused CPU forward of fake_quant_rows: y, whether every value was inside the grid, and the
// contiguous x and zero point the kernel used.
struct RowsForward {
  at::Tensor y, x, zp;
  bool inside = true;
};

RowsForward rows_forward(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point,
                         int64_t rows, int64_t qmin, int64_t qmax, const RowQParams* derive,
                         c10::Storage* reuse) {
  const at::Tensor xc = x.contiguous();
  at::Tensor y;
  if (reuse && *reuse && reuse->use_count() == 1 && reuse->nbytes() == xc.nbytes()) {
    // The buffer is ours alone (its last tensor is gone): a new tensor on it, no allocation.
    y = at::detail::make_tensor<c10::TensorImpl>(c10::Storage(*reuse),
                                                 c10::DispatchKeySet(c10::DispatchKey::CPU),
                                                 xc.dtype());
    y.unsafeGetTensorImpl()->set_sizes_contiguous(xc.sizes());
  } else {
    y = at::empty_like(xc, at::MemoryFormat::Contiguous);
    if (reuse) *reuse = y.storage();
  }
  // Given qparams are read only: a zero point to round or clamp is a prepared copy.
  const at::Tensor zp = derive ? zero_point : prepared_zero_point(zero_point, qmin, qmax);
  const bool inside = SCULPT_CPU_CALL(fq, forward_rows, xc.const_data_ptr<float>(),
                                      y.data_ptr<float>(), rows, xc.numel() / rows, qmin, qmax,
                                      scale.data_ptr<float>(), zp.data_ptr<float>(), derive);
  return {y, xc, zp, inside};
}

// fake_quant_rows's backward node: the incoming gradient as it is when every value was inside
// the grid (the usual case for weights ranged every step), else the STE kernel on the saved x
// and qparams. A bare autograd Node rather than a torch::autograd::Function: it runs on every
// quantized layer at every training step, and the Function's context (saved-data map, saved
// variables, output wrapping) cost about as much as the tiny layers' GEMMs.
struct FakeQuantRowsBackward final : public torch::autograd::Node {
  bool inside = true;
  at::Tensor x, scale, zp;  // only when not inside
  uint32_t x_version = 0;
  int64_t rows = 1, qmin = 0, qmax = 0;

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    if (inside || !grads[0].defined()) return {grads[0]};
    TORCH_CHECK(x._version() == x_version,
                "sculpt::fake_quant_rows: its input was modified in place before the backward");
    fq::Layout l;
    l.channels = rows;
    l.inner = x.numel() / rows;
    l.qmin = qmin;
    l.qmax = qmax;
    const at::Tensor dy = grads[0].to(at::kFloat).contiguous();
    at::Tensor dx = at::empty_like(x, at::MemoryFormat::Contiguous);
    SCULPT_CPU_CALL(fq, backward, dy, x, scale, zp, l, dx, nullptr, nullptr);
    return {dx.view(dy.sizes())};
  }
  std::string name() const override { return "sculpt::FakeQuantRowsBackward"; }
  void release_variables() override { x = scale = zp = at::Tensor(); }
};

at::Tensor fake_quant_rows_autograd(const at::Tensor& x, const at::Tensor& scale,
                                    const at::Tensor& zero_point, int64_t rows, int64_t qmin,
                                    int64_t qmax, const RowQParams* derive, c10::Storage* reuse) {
  RowsForward f = [&] {
    at::AutoDispatchBelowADInplaceOrView guard;  // the kernel itself records nothing
    return rows_forward(x, scale, zero_point, rows, qmin, qmax, derive, reuse);
  }();
  auto node = std::shared_ptr<FakeQuantRowsBackward>(new FakeQuantRowsBackward(),
                                                     torch::autograd::deleteNode);
  node->set_next_edges(torch::autograd::collect_next_edges(x));
  node->inside = f.inside;
  if (!f.inside) {
    node->x = f.x.detach();
    node->x_version = x._version();
    node->scale = scale.detach();
    node->zp = f.zp.detach();
    node->rows = rows;
    node->qmin = qmin;
    node->qmax = qmax;
  }
  torch::autograd::set_history(f.y, node);
  return f.y;
}

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

at::Tensor fake_quant_rows(const at::Tensor& x, int64_t rows, const at::Tensor& scale,
                           const at::Tensor& zero_point, int64_t qmin, int64_t qmax,
                           const RowQParams* derive, c10::Storage* reuse) {
  TORCH_CHECK(x.is_cpu() && x.scalar_type() == at::kFloat,
              "sculpt::fake_quant_rows: x must be a float32 CPU tensor, got ", x.scalar_type(),
              " on ", x.device());
  TORCH_CHECK(qmin < qmax, "sculpt::fake_quant_rows: quant_min ", qmin, " must be < quant_max ", qmax);
  TORCH_CHECK(rows > 0 && x.numel() % rows == 0, "sculpt::fake_quant_rows: ", x.numel(),
              " elements do not split into ", rows, " rows");
  for (const at::Tensor* t : {&scale, &zero_point})
    TORCH_CHECK(t->is_cpu() && t->scalar_type() == at::kFloat && t->is_contiguous() &&
                    t->numel() == rows,
                "sculpt::fake_quant_rows: scale and zero_point must be contiguous float32 CPU "
                "tensors of ", rows, " elements, got ", t->sizes(), " ", t->scalar_type());
  if (x.numel() == 0) return at::empty_like(x);
  if (!(at::GradMode::is_enabled() && x.requires_grad()))  // no graph to record (a data batch)
    return rows_forward(x, scale, zero_point, rows, qmin, qmax, derive, reuse).y;
  return fake_quant_rows_autograd(x, scale, zero_point, rows, qmin, qmax, derive, reuse);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fake_quant_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& scale,
    const at::Tensor& zero_point, std::optional<int64_t> axis, int64_t qmin, int64_t qmax,
    double grad_factor, bool need_scale_grad, bool need_zero_point_grad) {
  return fake_quant_backward_op().call(grad, x, scale, zero_point, axis, qmin, qmax, grad_factor,
                                       need_scale_grad, need_zero_point_grad);
}

}  // namespace sculpt::kernels
