#include "compression/passes/bsr.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <sstream>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

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

namespace {

// Columns of the batch handled together: one tile of y^T rows stays in L1 (and, with AVX-512,
// four registers per output row) while the blocks of a block row stream by.
constexpr int64_t kTile = 64;

struct Args {
  const float* xt;  // [tiles, cols, kTile]: x^T cut into tiles of kTile batch columns
  float* yt;        // [tiles, rows, kTile], holding the bias
  const int64_t* crow;
  const int64_t* col;
  const float* vals;
  int64_t b, rows, cols, tiles;
};

// Block rows [begin, end): y^T[r b + i, t] += sum_k sum_j V_k[i][j] x^T[c_k b + j, t]. Tile-major:
// one contiguous tile of x^T stays in L2 while every block row of the range uses it.
void rows_generic(const Args& a, int64_t begin, int64_t end) {
  const int64_t b = a.b;
  for (int64_t tile = 0; tile < a.tiles; ++tile) {
    const float* xtile = a.xt + tile * a.cols * kTile;
    float* ytile = a.yt + tile * a.rows * kTile;
    for (int64_t r = begin; r < end; ++r)
      for (int64_t k = a.crow[r]; k < a.crow[r + 1]; ++k) {
        const float* v = a.vals + k * b * b;
        const float* xb = xtile + a.col[k] * b * kTile;
        for (int64_t i = 0; i < b; ++i) {
          float* __restrict y = ytile + (r * b + i) * kTile;
          for (int64_t j = 0; j < b; ++j) {
            const float vij = v[i * b + j];
            const float* __restrict x = xb + j * kTile;
            for (int64_t t = 0; t < kTile; ++t) y[t] += vij * x[t];
          }
        }
      }
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) void rows_avx512(const Args& a, int64_t begin, int64_t end) {
  const int64_t b = a.b;
  for (int64_t tile = 0; tile < a.tiles; ++tile) {
    const float* xtile = a.xt + tile * a.cols * kTile;
    float* ytile = a.yt + tile * a.rows * kTile;
    for (int64_t r = begin; r < end; ++r)
      for (int64_t i = 0; i < b; ++i) {
        float* y = ytile + (r * b + i) * kTile;
        __m512 acc0 = _mm512_loadu_ps(y), acc1 = _mm512_loadu_ps(y + 16),
               acc2 = _mm512_loadu_ps(y + 32), acc3 = _mm512_loadu_ps(y + 48);
        for (int64_t k = a.crow[r]; k < a.crow[r + 1]; ++k) {
          const float* v = a.vals + (k * b + i) * b;
          const float* xb = xtile + a.col[k] * b * kTile;
          for (int64_t j = 0; j < b; ++j) {
            const __m512 vij = _mm512_set1_ps(v[j]);
            const float* x = xb + j * kTile;
            acc0 = _mm512_fmadd_ps(vij, _mm512_loadu_ps(x), acc0);
            acc1 = _mm512_fmadd_ps(vij, _mm512_loadu_ps(x + 16), acc1);
            acc2 = _mm512_fmadd_ps(vij, _mm512_loadu_ps(x + 32), acc2);
            acc3 = _mm512_fmadd_ps(vij, _mm512_loadu_ps(x + 48), acc3);
          }
        }
        _mm512_storeu_ps(y, acc0);
        _mm512_storeu_ps(y + 16, acc1);
        _mm512_storeu_ps(y + 32, acc2);
        _mm512_storeu_ps(y + 48, acc3);
      }
  }
}
bool has_avx512() {
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
}
#endif

}  // namespace

at::Tensor bsr_linear(const at::Tensor& x, const Bsr& m, const at::Tensor& bias) {
  SCULPT_CHECK(x.size(-1) == m.cols, "BSR linear: input has ", x.size(-1), " features, the weight ",
               m.cols);
  auto shape = x.sizes().vec();
  auto x2 = x.reshape({-1, m.cols}).to(at::kFloat);
  const int64_t n = x2.size(0), b = m.block, tiles = (n + kTile - 1) / kTile;
  // [tiles * kTile, cols] -> [tiles, cols, kTile]
  auto xt = at::constant_pad_nd(x2, {0, 0, 0, tiles * kTile - n}, 0)
                .view({tiles, kTile, m.cols})
                .permute({0, 2, 1})
                .contiguous();
  auto yt = bias.defined() ? bias.to(at::kFloat).view({1, m.rows, 1}).expand({tiles, m.rows, kTile})
                                 .contiguous()
                           : at::zeros({tiles, m.rows, kTile});
  const Args args{xt.data_ptr<float>(), yt.data_ptr<float>(), m.crow.data_ptr<int64_t>(),
                  m.col.data_ptr<int64_t>(), m.values.data_ptr<float>(), b, m.rows, m.cols, tiles};
  at::parallel_for(0, m.rows / b, 1, [&](int64_t begin, int64_t end) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (has_avx512()) return rows_avx512(args, begin, end);
#endif
    rows_generic(args, begin, end);
  });
  shape.back() = m.rows;
  // [tiles, rows, kTile] -> [tiles * kTile, rows] -> the first n rows
  return yt.permute({0, 2, 1}).reshape({tiles * kTile, m.rows}).slice(0, 0, n).reshape(shape).to(
      x.scalar_type());
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
