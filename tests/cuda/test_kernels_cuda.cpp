// The kernels' CUDA paths against the CPU operators and plain-ATen references (label cuda;
// skipped without a GPU by support/cuda_main.cpp).
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <optional>
#include <vector>

#include "kernels/bsr_gemm/bsr_gemm.h"
#include "kernels/fake_quant/fake_quant.h"

namespace k = sculpt::kernels;

namespace {
double rel_err(const at::Tensor& got, const at::Tensor& want) {
  const auto g = got.to(torch::kCPU, torch::kDouble), w = want.to(torch::kCPU, torch::kDouble);
  return ((g - w).norm() / (w.norm() + 1e-30)).item<double>();
}
}  // namespace

TEST_CASE("CUDA fake_quant equals the CPU operator: forward, STE and LSQ backward, every dtype",
          "[cuda][kernels]") {
  torch::manual_seed(31);
  struct Case {
    std::vector<int64_t> shape;
    std::optional<int64_t> axis;
  };
  const std::vector<Case> cases{{{1}, std::nullopt},        {{1000003}, std::nullopt},
                                {{64, 1000}, 0},            {{64, 1001}, 0},
                                {{7, 33, 5}, 1},            {{4096, 96}, 1},
                                {{3, 5, 7}, 2},             {{256, 16384}, 0}};
  for (auto dtype : {torch::kFloat, torch::kBFloat16, torch::kHalf, torch::kDouble})
    for (const auto& c : cases) {
      const int64_t ch = c.axis ? c.shape[static_cast<size_t>(*c.axis)] : 1;
      const at::Tensor x = (torch::randn(c.shape) * 3).to(dtype);
      const at::Tensor dy = torch::randn(c.shape).to(dtype);
      const at::Tensor s = torch::rand({ch}) * 0.1 + 0.02;
      const at::Tensor z = torch::randint(0, 256, {ch}).to(torch::kFloat);
      INFO("dtype " << dtype << " shape " << at::IntArrayRef(c.shape));
      const at::Tensor ycpu = k::fake_quant(x, s, z, c.axis, 0, 255);
      const at::Tensor ygpu = k::fake_quant(x.cuda(), s.cuda(), z.cuda(), c.axis, 0, 255);
      CHECK(torch::equal(ygpu.cpu(), ycpu));
      auto [dx, ds, dz] = k::fake_quant_backward(dy, x, s, z, c.axis, 0, 255, 0.5, true, true);
      auto [gdx, gds, gdz] =
          k::fake_quant_backward(dy.cuda(), x.cuda(), s.cuda(), z.cuda(), c.axis, 0, 255, 0.5, true, true);
      CHECK(torch::equal(gdx.cpu(), dx));
      CHECK(rel_err(gds, ds) < 1e-4);
      CHECK(rel_err(gdz, dz) < 1e-4);
      auto [sdx, sds, sdz] =
          k::fake_quant_backward(dy.cuda(), x.cuda(), s.cuda(), z.cuda(), c.axis, 0, 255, 0.5, false, false);
      CHECK(torch::equal(sdx.cpu(), dx));
      CHECK(!sds.defined());
    }
}

TEST_CASE("CUDA fake_quant matches ATen's CUDA fake_quantize_per_channel_affine and learnable ops",
          "[cuda][kernels]") {
  torch::manual_seed(32);
  const at::Tensor x = torch::randn({128, 999}, torch::kCUDA) * 3;
  const at::Tensor s = torch::rand({128}, torch::kCUDA) * 0.1 + 0.02;
  const at::Tensor z = torch::randint(0, 256, {128}, torch::kCUDA).to(torch::kFloat);
  const at::Tensor ya = at::fake_quantize_per_channel_affine(x, s, z.to(torch::kInt), 0, 0, 255);
  CHECK((ya - k::fake_quant(x, s, z, 0, 0, 255)).abs().max().item<double>() <= 1e-6);
  auto sa = s.clone().requires_grad_(true), sb = s.clone().requires_grad_(true);
  auto za = z.clone().requires_grad_(true), zb = z.clone().requires_grad_(true);
  const at::Tensor w = torch::randn_like(x);
  (at::_fake_quantize_learnable_per_channel_affine(x, sa, za, 0, 0, 255, 0.1) * w).sum().backward();
  (k::fake_quant(x, sb, zb, 0, 0, 255, 0.1) * w).sum().backward();
  CHECK(torch::allclose(sa.grad(), sb.grad(), 1e-4, 1e-4));
  CHECK(torch::allclose(za.grad(), zb.grad(), 1e-4, 1e-4));
}

TEST_CASE("CUDA bsr_linear equals the dense reference (fp32 CUDA cores, bf16/fp16 tensor cores) with gradients",
          "[cuda][kernels]") {
  torch::manual_seed(33);
  for (int64_t b : {16, 32, 64})
    for (double density : {0.0, 0.3, 1.0})
      for (int64_t batch : {1, 63, 130})
        for (auto dtype : {torch::kFloat, torch::kBFloat16, torch::kHalf}) {
          const int64_t rows = 3 * b, cols = 5 * b;
          at::Tensor keep = torch::rand({3, 5}) < density;
          if (density < 1.0) keep[1] = false;  // an empty block row
          const at::Tensor mask = keep.repeat_interleave(b, 0).repeat_interleave(b, 1);
          const at::Tensor w = (torch::randn({rows, cols}) * mask).to(torch::kCUDA, dtype);
          const at::Tensor x = torch::randn({batch, cols}).to(torch::kCUDA, dtype);
          const at::Tensor bias = torch::randn({rows}).to(torch::kCUDA, dtype);
          auto m = k::bsr_from_dense(w, b);
          const at::Tensor want = torch::linear(x.to(torch::kDouble).cpu(), w.to(torch::kDouble).cpu(),
                                                bias.to(torch::kDouble).cpu());
          const at::Tensor got = k::bsr_linear_sparse(x, m, bias);
          INFO("b " << b << " density " << density << " batch " << batch << " " << dtype);
          CHECK(got.is_cuda());
          CHECK(rel_err(got, want) < (dtype == torch::kFloat ? 1e-5 : 1e-2));
          // Backward: dx through the transposed blocks, dW for kept blocks, db.
          auto xg = x.clone().requires_grad_(true);
          auto vg = m.values.clone().requires_grad_(true);
          m.values = vg;
          auto y = k::bsr_linear_sparse(xg, m, bias);
          const at::Tensor go = torch::randn_like(y);
          auto grads = torch::autograd::grad({(y * go).sum()}, {xg, vg});
          const at::Tensor wd = w.to(torch::kDouble).cpu();
          const at::Tensor god = go.to(torch::kDouble).cpu();
          CHECK(rel_err(grads[0], god.mm(wd)) < (dtype == torch::kFloat ? 1e-5 : 1e-2));
          const at::Tensor dw = god.t().mm(x.to(torch::kDouble).cpu());
          const at::Tensor blocks = dw.view({3, b, 5, b}).permute({0, 2, 1, 3}).reshape({-1, b, b});
          const at::Tensor rowsk = torch::repeat_interleave(m.crow.cpu().diff());
          if (m.nnz() > 0)
            CHECK(rel_err(grads[1], blocks.index_select(0, rowsk * 5 + m.col.cpu())) <
                  (dtype == torch::kFloat ? 1e-5 : 1e-2));
        }
}
