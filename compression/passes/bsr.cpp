#include "compression/passes/bsr.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <sstream>

#include "core/error.h"

namespace sculpt::compression::prune {

double Bsr::density() const {
  const int64_t total = (rows / block) * (cols / block);
  return total ? static_cast<double>(col.numel()) / static_cast<double>(total) : 0.0;
}

int64_t Bsr::bytes() const {
  return values.numel() * 4 + col.numel() * 8 + crow.numel() * 8;
}

Bsr to_bsr(const at::Tensor& weight, int64_t b) {
  SCULPT_CHECK(weight.dim() == 2 && weight.size(0) % b == 0 && weight.size(1) % b == 0,
               "BSR: a weight of shape ", weight.sizes(), " does not split into ", b, "x", b,
               " blocks");
  Bsr m;
  m.rows = weight.size(0);
  m.cols = weight.size(1);
  m.block = b;
  auto w = weight.detach().to(at::kCPU, at::kFloat).contiguous();
  auto blocks = w.view({m.rows / b, b, m.cols / b, b}).permute({0, 2, 1, 3});  // [R, C, b, b]
  auto nonzero = blocks.ne(0).any(-1).any(-1);                                 // [R, C]
  auto idx = nonzero.nonzero();                                                // row-major order
  m.col = idx.select(1, 1).contiguous();
  m.crow = at::zeros({m.rows / b + 1}, at::kLong);
  m.crow.slice(0, 1).copy_(nonzero.sum(1).cumsum(0));
  m.values = blocks.index({idx.select(1, 0), idx.select(1, 1)}).contiguous();  // [nnz, b, b]
  return m;
}

at::Tensor bsr_to_dense(const Bsr& m) {
  const int64_t b = m.block;
  auto out = at::zeros({m.rows / b, m.cols / b, b, b});
  auto counts = m.crow.slice(0, 1) - m.crow.slice(0, 0, -1);
  auto rows = at::arange(m.rows / b, at::kLong).repeat_interleave(counts);
  out.index_put_({rows, m.col}, m.values);
  return out.permute({0, 2, 1, 3}).reshape({m.rows, m.cols});
}

at::Tensor bsr_linear(const at::Tensor& x, const Bsr& m, const at::Tensor& bias) {
  SCULPT_CHECK(x.size(-1) == m.cols, "BSR linear: input has ", x.size(-1), " features, the weight ",
               m.cols);
  auto shape = x.sizes().vec();
  auto x2 = x.reshape({-1, m.cols}).to(at::kFloat);
  const int64_t n = x2.size(0), b = m.block;
  auto xt = x2.t().contiguous();  // [cols, n]
  auto yt = bias.defined() ? bias.to(at::kFloat).unsqueeze(1).expand({m.rows, n}).contiguous()
                           : at::zeros({m.rows, n});
  const float* xs = xt.data_ptr<float>();
  float* ys = yt.data_ptr<float>();
  const int64_t* crow = m.crow.data_ptr<int64_t>();
  const int64_t* col = m.col.data_ptr<int64_t>();
  const float* vals = m.values.data_ptr<float>();
  at::parallel_for(0, m.rows / b, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t k = crow[r]; k < crow[r + 1]; ++k) {
        const float* v = vals + k * b * b;
        const float* xb = xs + col[k] * b * n;
        for (int64_t i = 0; i < b; ++i) {
          float* __restrict y = ys + (r * b + i) * n;
          const float* vi = v + i * b;
          int64_t j = 0;
          for (; j + 4 <= b; j += 4) {
            const float v0 = vi[j], v1 = vi[j + 1], v2 = vi[j + 2], v3 = vi[j + 3];
            const float* __restrict x0 = xb + j * n;
            const float* __restrict x1 = x0 + n;
            const float* __restrict x2p = x1 + n;
            const float* __restrict x3 = x2p + n;
            for (int64_t t = 0; t < n; ++t) y[t] += v0 * x0[t] + v1 * x1[t] + v2 * x2p[t] + v3 * x3[t];
          }
          for (; j < b; ++j) {
            const float vj = vi[j];
            const float* __restrict x0 = xb + j * n;
            for (int64_t t = 0; t < n; ++t) y[t] += vj * x0[t];
          }
        }
      }
    }
  });
  shape.back() = m.rows;
  return yt.t().contiguous().view(shape).to(x.scalar_type());
}

BsrLinearRuntime::BsrLinearRuntime(Bsr m, at::Tensor bias) : m_(std::move(m)), bias_(std::move(bias)) {
  if (bias_.defined()) bias_ = bias_.detach().to(at::kCPU, at::kFloat).contiguous();
}

at::Tensor BsrLinearRuntime::forward(const at::Tensor& input) {
  return bsr_linear(input.to(at::kCPU), m_, bias_).to(input.device());
}

std::string BsrLinearRuntime::describe() const {
  std::ostringstream os;
  os << "BSR " << m_.block << "x" << m_.block << ", " << m_.col.numel() << " of "
     << (m_.rows / m_.block) * (m_.cols / m_.block) << " blocks (" << m_.density() * 100
     << "% dense), " << m_.bytes() / 1024.0 << " KB";
  return os.str();
}

}  // namespace sculpt::compression::prune
