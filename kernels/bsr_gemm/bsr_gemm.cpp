// sculpt::bsr_linear, sculpt::bsr_linear_backward and sculpt::bsr_from_dense: checks, the
// dense-fallback dispatcher, layout conversion around the CPU / CUDA kernels, autograd.
#include "kernels/bsr_gemm/bsr_gemm.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "kernels/bsr_gemm/bsr_gemm_impl.h"
#include "kernels/cuda_entries.h"

namespace sculpt::kernels {

namespace {

// Crossover block densities: above them dense GEMM (torch::linear) is faster than the sparse
// kernels. CPU: measured with `OMP_NUM_THREADS=1 build/bin/bench_kernels bsr-crossover`
// (2048x2048 fp32 weight, batch 256, 1 thread, process CPU time, AVX-512 host, 2026-11-22):
// dense / sparse = 1.00 at 60% (b 8), 0.98 at 74% (b 16), 1.01 at 74% (b 32), 0.99 at 73%
// (b 64); the table keeps a margin below those. CUDA: not measured here (no GPU lent when this
// was written); the values are the published A100 Triton BSR crossovers (Quansight, fp16: 64x64
// from 60 % sparsity, 32x32 from 90 %, 16x16 from 99 %) until scripts/gpu_check.sh's
// `bench_kernels bsr-crossover --device cuda` measures them on the H200.
struct Crossover {
  c10::DeviceType device;
  int64_t block;  // 0: any other block size
  double density;
};
constexpr Crossover kCrossover[] = {
    {c10::DeviceType::CPU, 8, 0.55},   {c10::DeviceType::CPU, 16, 0.65},
    {c10::DeviceType::CPU, 32, 0.65},  {c10::DeviceType::CPU, 64, 0.65},
    {c10::DeviceType::CPU, 0, 0.5},    {c10::DeviceType::CUDA, 16, 0.01},
    {c10::DeviceType::CUDA, 32, 0.1},  {c10::DeviceType::CUDA, 64, 0.4},
    {c10::DeviceType::CUDA, 0, 0.0},
};

// CPU variants: the natural-layout kernel (vectors along the outputs, no transposes of x and y)
// for blocks of at least kNaturalMinBlock at a block density up to kNaturalMaxDensity, the tiles
// kernel (vectors along the batch, x and y transposed) otherwise. Measured in process CPU time,
// 2048x2048 fp32, batch 256 (speed-up over dense natural / tiles): b 32 at 10% 4.35 / 4.32,
// 25% 1.60 / 2.63, 50% 1.15 / 1.55; b 64 at 10% 5.56 / 4.48, 25% 2.39 / 2.77; b 16 at 10%
// 1.88 / 4.31.
constexpr int64_t kNaturalMinBlock = 32;
constexpr double kNaturalMaxDensity = 0.15;

struct Checked {
  int64_t rows, cols, block, nnz;
  at::Tensor crow, col;  // int64, contiguous, on the device
};

Checked check(const at::Tensor& x, const at::Tensor& crow, const at::Tensor& col,
              const at::Tensor& values, const std::optional<at::Tensor>& bias) {
  TORCH_CHECK(values.dim() == 3 && values.size(1) == values.size(2) && values.size(1) > 0,
              "sculpt::bsr_linear: values must be [nnz, b, b], got ", values.sizes());
  TORCH_CHECK(crow.dim() == 1 && crow.numel() >= 1 && col.dim() == 1,
              "sculpt::bsr_linear: crow_indices must be 1-D [rows/b + 1], col_indices 1-D [nnz]");
  TORCH_CHECK(col.numel() == values.size(0), "sculpt::bsr_linear: ", col.numel(),
              " column indices for ", values.size(0), " blocks");
  TORCH_CHECK(x.dim() >= 1, "sculpt::bsr_linear: x must have a feature dimension");
  Checked c;
  c.block = values.size(1);
  c.cols = x.size(-1);
  c.rows = (crow.numel() - 1) * c.block;
  c.nnz = col.numel();
  TORCH_CHECK(c.cols % c.block == 0, "sculpt::bsr_linear: ", c.cols,
              " input features do not split into blocks of ", c.block);
  TORCH_CHECK(x.scalar_type() == values.scalar_type() && at::isFloatingType(x.scalar_type()),
              "sculpt::bsr_linear: x (", x.scalar_type(), ") and values (", values.scalar_type(),
              ") must share one floating dtype");
  TORCH_CHECK(x.device() == values.device() && crow.device() == x.device() &&
                  col.device() == x.device(),
              "sculpt::bsr_linear: x, indices and values must be on one device");
  if (bias && bias->defined())
    TORCH_CHECK(bias->numel() == c.rows && bias->device() == x.device(),
                "sculpt::bsr_linear: bias has ", bias->numel(), " elements for ", c.rows,
                " outputs");
  c.crow = crow.to(at::kLong).contiguous();
  c.col = col.to(at::kLong).contiguous();
  // The indices against the shapes: on the host only (a device check would synchronize).
  if (x.is_cpu() && c.nnz > 0)
    TORCH_CHECK(c.col.max().item<int64_t>() < c.cols / c.block &&
                    c.crow[-1].item<int64_t>() == c.nnz,
                "sculpt::bsr_linear: the block indices do not fit an input of ", c.cols,
                " features (", c.cols / c.block, " block columns) and ", c.nnz, " blocks");
  return c;
}

bool use_dense(const Checked& c, const at::Tensor& x) {
  const int64_t all = (c.rows / c.block) * (c.cols / c.block);
  const double density = all ? static_cast<double>(c.nnz) / static_cast<double>(all) : 0.0;
  return density > bsr_crossover_density(x.device(), c.block, x.scalar_type());
}

at::Tensor dense_of(const Checked& c, const at::Tensor& values) {
  const int64_t b = c.block, br = c.rows / b, bc = c.cols / b;
  at::Tensor out = at::zeros({br * bc, b, b}, values.options());
  const at::Tensor rows = at::repeat_interleave(c.crow.diff());
  if (c.nnz) out.index_copy_(0, rows * bc + c.col, values);
  return out.view({br, bc, b, b}).permute({0, 2, 1, 3}).reshape({c.rows, c.cols});
}

// y [n, rows] = x2 [n, cols] W^T + bias by the kernels of x's device.
at::Tensor sparse_forward(const Checked& c, const at::Tensor& x2, const at::Tensor& values,
                          const at::Tensor& bias) {
  const int64_t n = x2.size(0);
  if (x2.is_cuda()) {
#ifdef SCULPT_WITH_CUDA
    at::Tensor y = at::empty({n, c.rows}, x2.options());
    if (n == 0) return y;
    const bsr::View v{c.crow.const_data_ptr<int64_t>(), c.col.const_data_ptr<int64_t>(), c.rows,
                      c.cols, c.block};
    loaded_cuda_entries("sculpt::bsr_linear").bsr_forward(v, values.contiguous(), x2.contiguous(), bias, y);
    return y;
#else
    TORCH_CHECK(false, "sculpt::bsr_linear: Sculpt's kernels were built without CUDA");
#endif
  }
  TORCH_CHECK(x2.is_cpu(), "sculpt::bsr_linear: unsupported device ", x2.device());
  const auto ct = x2.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor xc = x2.to(ct).contiguous();
  const bsr::View v{c.crow.const_data_ptr<int64_t>(), c.col.const_data_ptr<int64_t>(), c.rows,
                    c.cols, c.block};
  const at::Tensor vc = values.to(ct).contiguous();
  const at::Tensor bc = bias.defined() ? bias.to(ct).contiguous().reshape({-1}) : bias;
  const int64_t all = (c.rows / c.block) * (c.cols / c.block);
  const bool natural = c.block >= kNaturalMinBlock &&
                       static_cast<double>(c.nnz) <= kNaturalMaxDensity * static_cast<double>(all);
  if (!natural) {  // vectors along the batch (tiles of x^T)
    const int64_t t = SCULPT_CPU_CALL(bsr, tile_columns, ct), tiles = (n + t - 1) / t;
    const at::Tensor xt = at::constant_pad_nd(xc, {0, 0, 0, tiles * t - n}, 0)
                              .view({tiles, t, c.cols})
                              .permute({0, 2, 1})
                              .contiguous();
    at::Tensor yt = bc.defined() ? bc.reshape({1, c.rows, 1}).expand({tiles, c.rows, t}).contiguous()
                                 : at::zeros({tiles, c.rows, t}, xc.options());
    if (tiles > 0 && c.nnz > 0) SCULPT_CPU_CALL(bsr, forward_tiles, v, vc, xt, yt);
    return yt.permute({0, 2, 1}).reshape({tiles * t, c.rows}).slice(0, 0, n).to(x2.scalar_type());
  }
  at::Tensor y = at::empty({n, c.rows}, xc.options());
  if (n > 0) SCULPT_CPU_CALL(bsr, forward, v, vc, xc, bc, y);
  return y.to(x2.scalar_type());
}

Checked transposed(const Checked& c, const at::Tensor& values, at::Tensor& values_t) {
  BsrMatrix m{c.rows, c.cols, c.block, c.crow, c.col, values};
  BsrMatrix t = bsr_transpose(m);
  values_t = t.values;
  return Checked{t.rows, t.cols, t.block, t.nnz(), t.crow, t.col};
}

at::Tensor bsr_linear_impl(const at::Tensor& x, const at::Tensor& crow, const at::Tensor& col,
                           const at::Tensor& values, const std::optional<at::Tensor>& bias,
                           bool dense_fallback) {
  const Checked c = check(x, crow, col, values, bias);
  const at::Tensor b = bias ? *bias : at::Tensor();
  auto shape = x.sizes().vec();
  shape.back() = c.rows;
  if (dense_fallback && use_dense(c, x)) return at::linear(x, dense_of(c, values), b);
  return sparse_forward(c, x.reshape({-1, c.cols}), values, b).view(shape);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bsr_linear_backward_impl(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& crow, const at::Tensor& col,
    const at::Tensor& values, bool need_x, bool need_values, bool need_bias) {
  const Checked c = check(x, crow, col, values, std::nullopt);
  const at::Tensor g2 = grad.reshape({-1, c.rows}).to(x.scalar_type());
  const at::Tensor x2 = x.reshape({-1, c.cols});
  const bool dense = use_dense(c, x);
  at::Tensor dx, dv, db;
  if (need_x) {
    if (dense) {
      dx = at::matmul(g2, dense_of(c, values));
    } else {
      at::Tensor vt;
      const Checked ct = transposed(c, values, vt);
      dx = sparse_forward(ct, g2, vt, at::Tensor());
    }
    dx = dx.view(x.sizes());
  }
  if (need_values) {
    const int64_t b = c.block, bc = c.cols / b;
    const at::Tensor rows = at::repeat_interleave(c.crow.diff());
    if (dense || x.is_cuda()) {
      // Dense dW gathered (above the crossover), or on CUDA the kept blocks as one batched GEMM
      // (cuBLAS): dvalues[k] = dy[:, r_k]^T x[:, c_k].
      if (dense) {
        const at::Tensor dw = at::mm(g2.t(), x2);
        dv = dw.view({c.rows / b, b, bc, b}).permute({0, 2, 1, 3}).reshape({-1, b, b})
                 .index_select(0, rows * bc + c.col);
      } else {
        const int64_t n = x2.size(0);
        const at::Tensor gy = g2.view({n, c.rows / b, b}).index_select(1, rows);  // [n, nnz, b]
        const at::Tensor gx = x2.view({n, bc, b}).index_select(1, c.col);       // [n, nnz, b]
        dv = at::bmm(gy.permute({1, 2, 0}), gx.permute({1, 0, 2}));
      }
    } else {
      const auto ctype = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
      const at::Tensor dyt = g2.to(ctype).t().contiguous(), xt = x2.to(ctype).t().contiguous();
      dv = at::empty({c.nnz, b, b}, values.options().dtype(ctype));
      const bsr::View v{c.crow.const_data_ptr<int64_t>(), c.col.const_data_ptr<int64_t>(), c.rows,
                        c.cols, c.block};
      if (c.nnz > 0) SCULPT_CPU_CALL(bsr, block_grad, v, dyt, xt, dv);
    }
    dv = dv.to(values.scalar_type());
  }
  if (need_bias) db = g2.sum(0);
  return {dx, dv, db};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bsr_from_dense_impl(const at::Tensor& w,
                                                                    int64_t block) {
  BsrMatrix m = bsr_from_dense(w, block);
  return {m.crow, m.col, m.values};
}

using LinearFn = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                            const at::Tensor&, const std::optional<at::Tensor>&, bool);
using BackwardFn = std::tuple<at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    bool, bool, bool);

const c10::TypedOperatorHandle<LinearFn>& linear_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("sculpt::bsr_linear", "")
                             .typed<LinearFn>();
  return op;
}

const c10::TypedOperatorHandle<BackwardFn>& backward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("sculpt::bsr_linear_backward", "")
                             .typed<BackwardFn>();
  return op;
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class BsrLinearFunction : public torch::autograd::Function<BsrLinearFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& crow,
                            const at::Tensor& col, const at::Tensor& values,
                            const std::optional<at::Tensor>& bias, bool dense_fallback) {
    ctx->save_for_backward({x, crow, col, values});
    at::AutoDispatchBelowADInplaceOrView guard;
    return linear_op().call(x, crow, col, values, bias, dense_fallback);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    auto [dx, dv, db] = backward_op().call(grads[0], s[0], s[1], s[2], s[3],
                                           ctx->needs_input_grad(0), ctx->needs_input_grad(3),
                                           ctx->needs_input_grad(4));
    return {dx, at::Tensor(), at::Tensor(), dv, db, at::Tensor()};
  }
};

at::Tensor bsr_linear_autograd(const at::Tensor& x, const at::Tensor& crow, const at::Tensor& col,
                               const at::Tensor& values, const std::optional<at::Tensor>& bias,
                               bool dense_fallback) {
  return BsrLinearFunction::apply(x, crow, col, values, bias, dense_fallback);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(sculpt, m) {
  m.def("bsr_linear(Tensor x, Tensor crow_indices, Tensor col_indices, Tensor values, "
        "Tensor? bias=None, bool dense_fallback=True) -> Tensor");
  m.def("bsr_linear_backward(Tensor grad, Tensor x, Tensor crow_indices, Tensor col_indices, "
        "Tensor values, bool need_x, bool need_values, bool need_bias) -> (Tensor, Tensor, Tensor)");
  m.def("bsr_from_dense(Tensor weight, int block) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(sculpt, CPU, m) {
  m.impl("bsr_linear", &bsr_linear_impl);
  m.impl("bsr_linear_backward", &bsr_linear_backward_impl);
}

#ifdef SCULPT_WITH_CUDA
TORCH_LIBRARY_IMPL(sculpt, CUDA, m) {
  m.impl("bsr_linear", &bsr_linear_impl);
  m.impl("bsr_linear_backward", &bsr_linear_backward_impl);
}
#endif

TORCH_LIBRARY_IMPL(sculpt, Autograd, m) {
  m.impl("bsr_linear", &bsr_linear_autograd);
}

// No tensor math of its own beyond ATen: one kernel for every device (not differentiable).
TORCH_LIBRARY_IMPL(sculpt, CompositeExplicitAutograd, m) {
  m.impl("bsr_from_dense", &bsr_from_dense_impl);
}

double BsrMatrix::density() const {
  const int64_t all = block ? (rows / block) * (cols / block) : 0;
  return all ? static_cast<double>(nnz()) / static_cast<double>(all) : 0.0;
}

int64_t BsrMatrix::bytes() const {
  return (values.defined() ? values.numel() * values.element_size() : 0) +
         (col.defined() ? col.numel() * 8 : 0) + (crow.defined() ? crow.numel() * 8 : 0);
}

BsrMatrix bsr_from_dense(const at::Tensor& weight, int64_t block) {
  TORCH_CHECK(block > 0 && weight.dim() == 2 && weight.size(0) % block == 0 &&
                  weight.size(1) % block == 0,
              "sculpt::bsr_from_dense: a weight of shape ", weight.sizes(),
              " does not split into ", block, "x", block, " blocks");
  BsrMatrix m;
  m.rows = weight.size(0);
  m.cols = weight.size(1);
  m.block = block;
  const at::Tensor w = weight.detach().contiguous();
  const at::Tensor blocks =
      w.view({m.rows / block, block, m.cols / block, block}).permute({0, 2, 1, 3});  // [R, C, b, b]
  const at::Tensor kept = blocks.ne(0).any(-1).any(-1);                              // [R, C]
  const at::Tensor idx = kept.nonzero();  // row-major: ascending columns within a row
  m.col = idx.select(1, 1).contiguous();
  m.crow = at::zeros({m.rows / block + 1}, w.options().dtype(at::kLong));
  m.crow.slice(0, 1).copy_(kept.sum(1).cumsum(0));
  m.values = blocks.index({idx.select(1, 0), idx.select(1, 1)}).contiguous();  // [nnz, b, b]
  return m;
}

at::Tensor bsr_to_dense(const BsrMatrix& m) {
  const Checked c{m.rows, m.cols, m.block, m.nnz(), m.crow, m.col};
  return dense_of(c, m.values);
}

BsrMatrix bsr_transpose(const BsrMatrix& m) {
  const int64_t b = m.block, br = m.rows / b, bc = m.cols / b;
  BsrMatrix t{m.cols, m.rows, b, {}, {}, {}};
  const at::Tensor rows = at::repeat_interleave(m.crow.diff());
  const at::Tensor order = at::argsort(m.col * br + rows);  // keys are unique
  t.col = rows.index_select(0, order).contiguous();
  t.crow = at::zeros({bc + 1}, m.crow.options());
  t.crow.slice(0, 1).copy_(at::bincount(m.col, {}, bc).cumsum(0));
  t.values = m.values.index_select(0, order).transpose(1, 2).contiguous();
  return t;
}

void check_features(const at::Tensor& x, const BsrMatrix& m) {
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) == m.cols, "sculpt::bsr_linear: x has ",
              x.dim() ? x.size(-1) : 0, " input features, the weight ", m.cols);
}

at::Tensor bsr_linear(const at::Tensor& x, const BsrMatrix& m, const at::Tensor& bias) {
  check_features(x, m);
  return linear_op().call(x, m.crow, m.col, m.values,
                          bias.defined() ? std::optional<at::Tensor>(bias) : std::nullopt, true);
}

at::Tensor bsr_linear_sparse(const at::Tensor& x, const BsrMatrix& m, const at::Tensor& bias) {
  check_features(x, m);
  return linear_op().call(x, m.crow, m.col, m.values,
                          bias.defined() ? std::optional<at::Tensor>(bias) : std::nullopt, false);
}

double bsr_crossover_density(const at::Device& device, int64_t block, at::ScalarType /*dtype*/) {
  double other = 0.0;
  for (const auto& c : kCrossover) {
    if (c.device != device.type()) continue;
    if (c.block == block) return c.density;
    if (c.block == 0) other = c.density;
  }
  return other;
}

BsrLinear::BsrLinear(const at::Tensor& weight, const at::Tensor& bias, int64_t block)
    : m_(bsr_from_dense(weight, block)), bias_(bias.defined() ? bias.detach() : at::Tensor()) {
  if (m_.density() > bsr_crossover_density(weight.device(), block, weight.scalar_type()))
    dense_ = weight.detach().contiguous();
}

at::Tensor BsrLinear::forward(const at::Tensor& x) const {
  return sparse() ? bsr_linear_sparse(x, m_, bias_) : at::linear(x, dense_, bias_);
}

}  // namespace sculpt::kernels
