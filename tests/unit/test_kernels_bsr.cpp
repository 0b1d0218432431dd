// The block-sparse GEMM (sculpt::bsr_linear) against dense ATen: forward, backward, finite
// differences, the conversion and the dense/sparse dispatch (CPU).
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "kernels/bsr_gemm/bsr_gemm.h"

namespace k = sculpt::kernels;

namespace {

// A random [rows, cols] weight with about `density` of its b x b blocks kept; block row
// `empty_row` (when >= 0) has none. Kept blocks hold no zeros.
at::Tensor block_weight(int64_t rows, int64_t cols, int64_t b, double density,
                        int64_t empty_row = -1) {
  at::Tensor keep = torch::rand({rows / b, cols / b}) < density;
  if (empty_row >= 0 && empty_row < rows / b) keep[empty_row] = false;
  const at::Tensor mask = keep.repeat_interleave(b, 0).repeat_interleave(b, 1);
  return (torch::rand({rows, cols}) + 0.5) * (torch::randint(0, 2, {rows, cols}) * 2 - 1) * mask;
}

double tolerance(at::ScalarType t) {
  return t == torch::kDouble ? 1e-10 : t == torch::kFloat ? 2e-5 : 2e-2;
}

}  // namespace

TEST_CASE("sculpt::bsr_linear equals x W^T + b for many shapes, densities and every dtype",
          "[kernels][bsr]") {
  torch::manual_seed(21);
  struct Shape {
    int64_t rows, cols, b;
  };
  for (const auto& sh : {Shape{48, 80, 16}, Shape{32, 32, 32}, Shape{64, 128, 64}, Shape{96, 64, 32},
                         Shape{24, 40, 8}, Shape{16, 48, 16}})
    for (double density : {0.0, 0.35, 1.0})
      for (int64_t batch : {1, 3, 65, 130})
        for (auto dtype : {torch::kFloat, torch::kDouble, torch::kBFloat16, torch::kHalf}) {
          const at::Tensor w = block_weight(sh.rows, sh.cols, sh.b, density, density > 0.5 ? -1 : 1)
                                   .to(dtype);
          const at::Tensor bias = torch::randn({sh.rows}).to(dtype);
          const at::Tensor x = torch::randn({batch, sh.cols}).to(dtype);
          const auto m = k::bsr_from_dense(w, sh.b);
          INFO("W " << sh.rows << "x" << sh.cols << " b " << sh.b << " density " << density
                    << " batch " << batch << " " << dtype << " nnz " << m.nnz());
          const at::Tensor want = k::bsr_linear_ref(x.to(torch::kDouble), k::BsrMatrix{m.rows, m.cols, m.block, m.crow, m.col, m.values.to(torch::kDouble)},
                                                    bias.to(torch::kDouble));
          for (bool fallback : {false, true}) {
            const at::Tensor got = fallback ? k::bsr_linear(x, m, bias) : k::bsr_linear_sparse(x, m, bias);
            REQUIRE(got.scalar_type() == dtype);
            REQUIRE(got.sizes() == want.sizes());
            const double scale = want.abs().max().item<double>() + 1.0;
            CHECK((got.to(torch::kDouble) - want).abs().max().item<double>() <= tolerance(dtype) * scale);
          }
          if (density == 0.0) CHECK(m.nnz() == 0);
          if (density == 1.0) CHECK(m.nnz() == (sh.rows / sh.b) * (sh.cols / sh.b));
        }
  // Leading batch dimensions and no bias.
  const at::Tensor w = block_weight(32, 64, 16, 0.5);
  const at::Tensor x = torch::randn({2, 3, 64});
  CHECK(torch::allclose(k::bsr_linear_sparse(x, k::bsr_from_dense(w, 16), {}), torch::linear(x, w),
                        1e-5, 1e-5));
}

TEST_CASE("sculpt::bsr_linear's low-density CPU variant (natural layout) equals x W^T + b",
          "[kernels][bsr]") {
  // At most 15% of the blocks of 32 or 64 take the natural-layout kernel, the rest the tiles one.
  torch::manual_seed(26);
  for (int64_t b : {32, 64})
    for (double density : {0.08, 0.14})
      for (int64_t batch : {1, 9, 257, 300})
        for (auto dtype : {torch::kFloat, torch::kDouble, torch::kBFloat16}) {
          const at::Tensor w = block_weight(512, 384, b, density, 1).to(dtype);
          const auto m = k::bsr_from_dense(w, b);
          const at::Tensor x = torch::randn({batch, 384}).to(dtype);
          const at::Tensor bias = torch::randn({512}).to(dtype);
          const at::Tensor want = torch::linear(x.to(torch::kDouble), w.to(torch::kDouble),
                                                bias.to(torch::kDouble));
          const at::Tensor got = k::bsr_linear_sparse(x, m, bias);
          INFO("b " << b << " density " << m.density() << " batch " << batch << " " << dtype);
          CHECK(m.nnz() > 0);
          const double scale = want.abs().max().item<double>() + 1.0;
          CHECK((got.to(torch::kDouble) - want).abs().max().item<double>() <= tolerance(dtype) * scale);
        }
}

TEST_CASE("sculpt::bsr_linear backward: dx, the kept blocks of dW and db equal dense autograd",
          "[kernels][bsr]") {
  torch::manual_seed(22);
  for (int64_t b : {8, 16, 32})
    for (double density : {0.0, 0.3, 1.0})
      for (int64_t batch : {1, 7, 70}) {
        const at::Tensor w = block_weight(4 * b, 3 * b, b, density, 2);
        auto m = k::bsr_from_dense(w, b);
        auto values = m.values.clone().requires_grad_(true);
        m.values = values;
        auto x = torch::randn({batch, 3 * b}).requires_grad_(true);
        auto bias = torch::randn({4 * b}).requires_grad_(true);
        const at::Tensor go = torch::randn({batch, 4 * b});
        for (bool fallback : {false, true}) {
          auto y = fallback ? k::bsr_linear(x, m, bias) : k::bsr_linear_sparse(x, m, bias);
          auto grads = torch::autograd::grad({(y * go).sum()}, {x, values, bias});
          auto wd = w.clone().requires_grad_(true);
          auto x2 = x.detach().clone().requires_grad_(true);
          auto b2 = bias.detach().clone().requires_grad_(true);
          auto ref = torch::autograd::grad({(torch::linear(x2, wd, b2) * go).sum()}, {x2, wd, b2});
          INFO("b " << b << " density " << density << " batch " << batch << " fallback " << fallback);
          CHECK(torch::allclose(grads[0], ref[0], 1e-4, 1e-4));
          const auto kept = k::bsr_from_dense(w, b);  // same pattern: gather dW's kept blocks
          at::Tensor blocks = ref[1].view({4, b, 3, b}).permute({0, 2, 1, 3}).reshape({-1, b, b});
          const at::Tensor rows = torch::repeat_interleave(kept.crow.diff());
          CHECK(torch::allclose(grads[1], blocks.index_select(0, rows * 3 + kept.col), 1e-4, 1e-4));
          CHECK(grads[1].sizes() == values.sizes());
          CHECK(torch::allclose(grads[2], ref[2], 1e-5, 1e-5));
        }
      }
}

TEST_CASE("sculpt::bsr_linear gradients match central finite differences in double",
          "[kernels][bsr]") {
  torch::manual_seed(23);
  const int64_t b = 4;
  const at::Tensor w = block_weight(3 * b, 2 * b, b, 0.6, 1).to(torch::kDouble);
  auto m = k::bsr_from_dense(w, b);
  REQUIRE(m.nnz() > 0);
  const at::Tensor x0 = torch::randn({5, 2 * b}, torch::kDouble);
  const at::Tensor bias0 = torch::randn({3 * b}, torch::kDouble);
  const at::Tensor go = torch::randn({5, 3 * b}, torch::kDouble);
  auto loss = [&](const at::Tensor& x, const at::Tensor& v, const at::Tensor& bias) {
    k::BsrMatrix mm = m;
    mm.values = v;
    return (k::bsr_linear_sparse(x, mm, bias) * go).sum();
  };
  auto x = x0.clone().requires_grad_(true), v = m.values.clone().requires_grad_(true),
       bias = bias0.clone().requires_grad_(true);
  auto g = torch::autograd::grad({loss(x, v, bias)}, {x, v, bias});
  const double eps = 1e-6;
  std::vector<at::Tensor> params{x0, m.values, bias0};
  for (size_t p = 0; p < params.size(); ++p) {
    const at::Tensor flat = params[p].reshape({-1});
    for (int64_t i = 0; i < flat.numel(); ++i) {
      std::vector<at::Tensor> plus, minus;
      for (size_t q = 0; q < params.size(); ++q) plus.push_back(params[q].clone()), minus.push_back(params[q].clone());
      plus[p].view({-1})[i] += eps;
      minus[p].view({-1})[i] -= eps;
      const double numeric = (loss(plus[0], plus[1], plus[2]).item<double>() -
                              loss(minus[0], minus[1], minus[2]).item<double>()) / (2 * eps);
      const double analytic = g[p].reshape({-1})[i].item<double>();
      INFO("parameter " << p << " element " << i);
      CHECK(std::abs(numeric - analytic) <= 1e-6 * (1 + std::abs(numeric)));
    }
  }
}

TEST_CASE("BSR conversion matches torch's to_sparse_bsr; the transpose is W^T",
          "[kernels][bsr]") {
  torch::manual_seed(24);
  const at::Tensor w = block_weight(64, 96, 16, 0.4, 0);
  const auto m = k::bsr_from_dense(w, 16);
  const at::Tensor t = w.to_sparse_bsr({16, 16});
  CHECK(torch::equal(m.crow, t.crow_indices()));
  CHECK(torch::equal(m.col, t.col_indices()));
  CHECK(torch::equal(m.values, t.values()));
  CHECK(torch::equal(k::bsr_to_dense(m), w));
  CHECK(torch::equal(k::bsr_to_dense(k::bsr_transpose(m)), w.t()));
  CHECK_THROWS_WITH(k::bsr_from_dense(torch::randn({30, 32}), 16), Catch::Contains("does not split"));
  CHECK_THROWS_WITH(k::bsr_linear(torch::randn({2, 80}), m, {}), Catch::Contains("80 input features"));
  // The operator itself checks its indices against x (it has no other shape to go by).
  CHECK_THROWS_WITH(k::bsr_linear(torch::randn({2, 80}), k::BsrMatrix{64, 80, 16, m.crow, m.col, m.values}, {}),
                    Catch::Contains("do not fit an input of 80 features"));
}

TEST_CASE("the BSR dispatcher keeps dense weights above the crossover density, sparse below",
          "[kernels][bsr]") {
  torch::manual_seed(25);
  const double cross = k::bsr_crossover_density(at::Device(at::kCPU), 32, torch::kFloat);
  REQUIRE(cross > 0.0);
  REQUIRE(cross < 1.0);
  const at::Tensor x = torch::randn({9, 256});
  for (double density : {0.05, 1.0}) {
    const at::Tensor w = block_weight(128, 256, 32, density);
    const k::BsrLinear layer(w, {}, 32);
    CHECK(layer.sparse() == (layer.matrix().density() <= cross));
    CHECK(torch::allclose(layer.forward(x), torch::linear(x, w), 1e-5, 1e-5));
  }
  CHECK(k::BsrLinear(block_weight(128, 256, 32, 1.0), {}, 32).sparse() == false);
  CHECK(k::BsrLinear(block_weight(128, 256, 32, 0.0), {}, 32).sparse() == true);
}
