// The fake-quant operators against plain-ATen references and ATen's own fake-quant ops (CPU).
// The block-sparse GEMM: test_kernels_bsr.cpp.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <optional>
#include <vector>

#include "kernels/fake_quant/fake_quant.h"

namespace k = sculpt::kernels;

namespace {

struct FqCase {
  std::vector<int64_t> shape;
  std::optional<int64_t> axis;
};

// Positive scales around the spread of x / (grid size), so values fall inside, on and outside
// the grid; zero points random integers in the grid (0 for symmetric signed grids).
std::pair<at::Tensor, at::Tensor> random_qparams(int64_t channels, int64_t qmin, int64_t qmax,
                                                 bool symmetric) {
  const double span = static_cast<double>(qmax - qmin);
  at::Tensor s = (torch::rand({channels}) * 2.0 + 0.5) * (5.0 / span);
  at::Tensor z = symmetric ? torch::zeros({channels})
                           : torch::randint(qmin, qmax + 1, {channels}).to(torch::kFloat);
  return {s, z};
}

std::vector<FqCase> fq_cases() {
  return {{{1}, std::nullopt},           {{7}, std::nullopt},         {{1, 1}, 0},
          {{5, 3}, 0},                   {{5, 3}, 1},                 {{5, 3}, -1},
          {{17, 33, 5}, 0},              {{17, 33, 5}, 1},            {{17, 33, 5}, 2},
          {{4, 64}, 0},                  {{3, 40000}, 0},             {{300, 48}, 1},
          {{2, 3, 8, 8}, 1},             {{100003}, std::nullopt},    {{9, 70001}, std::nullopt},
          {{70000, 3}, 1},               {{1, 2, 3, 4}, std::nullopt}};
}

int64_t channels_of(const FqCase& c) {
  if (!c.axis) return 1;
  const auto rank = static_cast<int64_t>(c.shape.size());
  return c.shape[static_cast<size_t>(*c.axis < 0 ? *c.axis + rank : *c.axis)];
}

}  // namespace

TEST_CASE("sculpt::fake_quant forward equals the plain-ATen reference bit for bit, every dtype",
          "[kernels][fake_quant]") {
  torch::manual_seed(11);
  for (auto dtype : {torch::kFloat, torch::kDouble, torch::kBFloat16, torch::kHalf})
    for (const auto& c : fq_cases())
      for (int bits : {2, 4, 8})
        for (bool symmetric : {true, false}) {
          const int64_t qmin = symmetric ? -((1 << (bits - 1)) - 1) : 0;
          const int64_t qmax = symmetric ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
          auto [s, z] = random_qparams(channels_of(c), qmin, qmax, symmetric);
          const at::Tensor x = (torch::randn(c.shape) * 3.0 + (symmetric ? 0.0 : 2.0)).to(dtype);
          const at::Tensor got = k::fake_quant(x, s, z, c.axis, qmin, qmax);
          const at::Tensor want = k::fake_quant_ref(x, s, z, c.axis, qmin, qmax);
          INFO("dtype " << dtype << " shape " << at::IntArrayRef(c.shape) << " axis "
                        << (c.axis ? *c.axis : -99) << " bits " << bits << " sym " << symmetric);
          REQUIRE(got.scalar_type() == dtype);
          REQUIRE(got.sizes() == x.sizes());
          CHECK(torch::equal(got, want));
          // Not a trivial map: some values are clipped and some reproduced inside the grid.
          if (x.numel() > 1000) CHECK(!torch::equal(got, x));
        }
}

TEST_CASE("sculpt::fake_quant backward (STE and LSQ sums) equals the reference, every dtype",
          "[kernels][fake_quant]") {
  torch::manual_seed(12);
  for (auto dtype : {torch::kFloat, torch::kDouble, torch::kBFloat16, torch::kHalf})
    for (const auto& c : fq_cases())
      for (bool symmetric : {true, false}) {
        const int64_t qmin = symmetric ? -7 : 0, qmax = symmetric ? 7 : 15;
        auto [s, z] = random_qparams(channels_of(c), qmin, qmax, symmetric);
        const at::Tensor x = (torch::randn(c.shape) * 3.0).to(dtype);
        const at::Tensor dy = torch::randn(c.shape).to(dtype);
        const double g = 0.37;
        auto [dx, ds, dz] = k::fake_quant_backward(dy, x, s, z, c.axis, qmin, qmax, g, true, true);
        auto [rdx, rds, rdz] = k::fake_quant_backward_ref(dy, x, s, z, c.axis, qmin, qmax, g);
        INFO("dtype " << dtype << " shape " << at::IntArrayRef(c.shape) << " axis "
                      << (c.axis ? *c.axis : -99) << " sym " << symmetric);
        CHECK(torch::equal(dx, rdx));
        // The sums differ by summation order only: float rounding of up to n terms of size
        // |dy| * (qmax - qmin).
        const double n = static_cast<double>(x.numel() / channels_of(c));
        const double tol = 1e-6 * n * (qmax - qmin) * g * 4.0 + 1e-6;
        CHECK(ds.sizes() == s.sizes());
        CHECK((ds - rds).abs().max().item<double>() <= tol);
        CHECK((dz - rdz).abs().max().item<double>() <= tol);
        // Clipping happens in these cases, so the zero-point gradient is exercised.
        if (x.numel() > 1000 && !symmetric) CHECK(rdz.abs().sum().item<double>() > 0);
        // STE only: no sums asked for, none computed.
        auto [dx2, ds2, dz2] = k::fake_quant_backward(dy, x, s, z, c.axis, qmin, qmax, g, false, false);
        CHECK(torch::equal(dx2, rdx));
        CHECK(!ds2.defined());
        CHECK(!dz2.defined());
      }
}

TEST_CASE("sculpt::fake_quant autograd: STE for x, LSQ gradients for a learned scale and zero point",
          "[kernels][fake_quant]") {
  torch::manual_seed(13);
  const at::Tensor x0 = torch::randn({6, 50}) * 2.0;
  for (std::optional<int64_t> axis : {std::optional<int64_t>(), std::optional<int64_t>(0)}) {
    const int64_t ch = axis ? 6 : 1;
    auto [s0, z0] = random_qparams(ch, 0, 15, false);
    auto x = x0.clone().requires_grad_(true);
    auto s = s0.clone().requires_grad_(true);
    auto z = z0.clone().requires_grad_(true);
    auto y = k::fake_quant(x, s, z, axis, 0, 15, 0.5);
    const at::Tensor w = torch::randn(y.sizes());
    (y * w).sum().backward();
    auto [rdx, rds, rdz] = k::fake_quant_backward_ref(w, x0, s0, z0, axis, 0, 15, 0.5);
    CHECK(torch::equal(x.grad(), rdx));
    CHECK(torch::allclose(s.grad(), rds, 1e-5, 1e-5));
    CHECK(torch::allclose(z.grad(), rdz, 1e-5, 1e-5));
    // Without requires_grad on the qparams only x gets a gradient.
    auto x2 = x0.clone().requires_grad_(true);
    k::fake_quant(x2, s0, z0, axis, 0, 15).mul(w).sum().backward();
    CHECK(torch::equal(x2.grad(), rdx));
  }
}

TEST_CASE("sculpt::fake_quant_rows: range, qparams and forward in one call equal aminmax and fake_quant",
          "[kernels][fake_quant]") {
  torch::manual_seed(21);
  // A symmetric rule (zero point 0) and an asymmetric one with a zero point to round and clamp.
  const std::pair<int64_t, int64_t> sym{-127, 127}, asym{0, 15};
  for (auto [qmin, qmax] : {sym, asym}) {
    const k::RowQParams rule = [qmin = qmin, qmax = qmax](int64_t, float lo, float hi, float& s,
                                                          float& z) {
      if (qmin < 0) {
        s = std::max(std::max(-lo, hi), 1e-6f) / static_cast<float>(qmax), z = 0.0f;
      } else {
        s = std::max(hi - std::min(lo, 0.0f), 1e-6f) / static_cast<float>(qmax - qmin);
        z = static_cast<float>(qmin) - lo / s + 0.3f;  // rounded and clamped by the kernel
      }
    };
    for (const auto& [rows, inner] : std::vector<std::pair<int64_t, int64_t>>{
             {1, 1}, {1, 7}, {1, 100003}, {1, 9 * 70001}, {5, 3}, {64, 784}, {10, 64},
             {3, 40000}, {300, 48}, {7, 33}}) {
      CAPTURE(qmin, rows, inner);
      const at::Tensor x0 = torch::randn({rows, inner}) * 3.0;
      std::vector<float> los(static_cast<size_t>(rows)), his(los.size());
      const k::RowQParams derive = [&](int64_t r, float lo, float hi, float& s, float& z) {
        los[static_cast<size_t>(r)] = lo, his[static_cast<size_t>(r)] = hi;
        rule(r, lo, hi, s, z);
      };
      at::Tensor s = torch::empty({rows}), z = torch::empty({rows});
      auto x = x0.clone().requires_grad_(true);
      const at::Tensor y = k::fake_quant_rows(x, rows, s, z, qmin, qmax, &derive);
      // The ranges the rule saw are aminmax's; the kernel kept the rounded, clamped zero point.
      auto [rlo, rhi] = at::aminmax(rows == 1 ? x0.reshape({1, -1}) : x0, 1);
      CHECK(torch::equal(torch::from_blob(los.data(), {rows}).clone(), rlo));
      CHECK(torch::equal(torch::from_blob(his.data(), {rows}).clone(), rhi));
      at::Tensor rs = torch::empty({rows}), rz = torch::empty({rows});
      for (int64_t r = 0; r < rows; ++r) {
        float a, b;
        rule(r, rlo[r].item<float>(), rhi[r].item<float>(), a, b);
        rs[r] = a, rz[r] = b;
      }
      CHECK(torch::equal(s, rs));
      CHECK(torch::equal(z, rz.round().clamp(qmin, qmax)));
      const std::optional<int64_t> axis = rows == 1 ? std::nullopt : std::optional<int64_t>(0);
      const at::Tensor fq = rows == 1 ? k::fake_quant(x0.reshape({-1}), rs, rz, axis, qmin, qmax)
                                      : k::fake_quant(x0, rs, rz, axis, qmin, qmax);
      CHECK(torch::equal(y, fq.reshape(y.sizes())));
      // The STE gradient; on the symmetric grid of the rows' own ranges every value is inside,
      // so the gradient passes through unchanged.
      const at::Tensor g = torch::randn(y.sizes());
      y.backward(g);
      auto rdx0 = std::get<0>(k::fake_quant_backward_ref(g.reshape({rows, -1}),
                                                         x0.reshape({rows, -1}), s, z, 0, qmin,
                                                         qmax, 1.0));
      CHECK(torch::equal(x.grad(), rdx0.reshape(x.sizes())));
      if (qmin < 0) CHECK(torch::equal(x.grad(), g));
      // Given qparams (half the scales: values clip), read only; the STE masks the gradient.
      const at::Tensor hs = s / 2, hz = z.clone();
      auto x2 = x0.clone().requires_grad_(true);
      const at::Tensor y2 = k::fake_quant_rows(x2, rows, hs, hz, qmin, qmax);
      CHECK(torch::equal(hs, s / 2));
      const at::Tensor fq2 = k::fake_quant(x0.reshape({rows, -1}), hs, hz, 0, qmin, qmax);
      CHECK(torch::equal(y2, fq2.reshape(y2.sizes())));
      y2.backward(g);
      auto [rdx, rds, rdz] =
          k::fake_quant_backward_ref(g.reshape({rows, -1}), x0.reshape({rows, -1}), hs, hz, 0, qmin, qmax, 1.0);
      CHECK(torch::equal(x2.grad(), rdx.reshape(x2.sizes())));
      if (inner > 100) CHECK(x2.grad().eq(0).any().item<bool>());
    }
  }
  // Given zero points off the grid are rounded half to even and clamped, as fake_quant does.
  const at::Tensor x = torch::randn({4, 100}) * 4.0;
  const at::Tensor s = torch::full({4}, 0.05), z = torch::tensor({2.5f, 3.5f, -3.0f, 40.0f});
  CHECK(torch::equal(k::fake_quant_rows(x, 4, s, z, 0, 15), k::fake_quant(x, s, z, 0, 0, 15)));
  CHECK(torch::equal(z, torch::tensor({2.5f, 3.5f, -3.0f, 40.0f})));
  // A NaN reaches the rule as the row's range (as at::aminmax).
  at::Tensor xn = torch::randn({2, 50});
  xn[1][17] = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> seen(4);
  const k::RowQParams spy = [&](int64_t r, float lo, float hi, float& s2, float& z2) {
    seen[static_cast<size_t>(2 * r)] = lo, seen[static_cast<size_t>(2 * r + 1)] = hi;
    s2 = 0.1f, z2 = 0.0f;
  };
  at::Tensor s2 = torch::empty({2}), z2 = torch::empty({2});
  k::fake_quant_rows(xn, 2, s2, z2, -127, 127, &spy);
  CHECK(seen[0] == xn[0].min().item<float>());
  CHECK(std::isnan(seen[2]));
  CHECK(std::isnan(seen[3]));
  // Infinities are ranges like any value (the vector path hands them to the exact one).
  at::Tensor xi = torch::randn({1, 100});
  xi[0][60] = std::numeric_limits<float>::infinity();
  at::Tensor s3 = torch::empty({1}), z3 = torch::empty({1});
  k::fake_quant_rows(xi, 1, s3, z3, -127, 127, &spy);
  CHECK(seen[0] == xi.min().item<float>());
  CHECK(seen[1] == std::numeric_limits<float>::infinity());
  // The output buffer is reused once nothing refers to it, never while a tensor (or the autograd
  // graph) still holds it.
  c10::Storage buf;
  const at::Tensor xr = torch::randn({8, 40}), sr = torch::full({8}, 0.02), zr = torch::zeros({8});
  const at::Tensor want = k::fake_quant(xr, sr, zr, 0, -127, 127);
  at::Tensor y1 = k::fake_quant_rows(xr, 8, sr, zr, -127, 127, nullptr, &buf);
  const void* first = y1.data_ptr();
  CHECK(buf.data() == first);
  at::Tensor y2 = k::fake_quant_rows(xr * 2, 8, sr, zr, -127, 127, nullptr, &buf);
  CHECK(y2.data_ptr() != first);
  CHECK(torch::equal(y1, want));
  const void* second = y2.data_ptr();
  y1.reset();
  at::Tensor v = y2.view({-1});
  y2.reset();
  CHECK(k::fake_quant_rows(xr, 8, sr, zr, -127, 127, nullptr, &buf).data_ptr() != second);  // v
  v.reset();
  auto xg = xr.clone().requires_grad_(true);
  at::Tensor y3 = k::fake_quant_rows(xg, 8, sr, zr, -127, 127, nullptr, &buf);
  const void* third = y3.data_ptr();
  at::Tensor loss = (y3 * y3).sum();  // the graph keeps y3
  y3.reset();
  CHECK(k::fake_quant_rows(xr, 8, sr, zr, -127, 127, nullptr, &buf).data_ptr() != third);
  loss.backward();
  loss.reset();
  at::Tensor y4 = k::fake_quant_rows(xr, 8, sr, zr, -127, 127, nullptr, &buf);
  CHECK(y4.data_ptr() == buf.data());
  CHECK(torch::equal(y4, want));
  // Bad arguments name the problem.
  CHECK_THROWS_WITH(k::fake_quant_rows(x.to(torch::kDouble), 4, s, z, 0, 15),
                    Catch::Contains("float32 CPU"));
  CHECK_THROWS_WITH(k::fake_quant_rows(x, 3, s, z, 0, 15), Catch::Contains("do not split"));
  CHECK_THROWS_WITH(k::fake_quant_rows(x, 2, s, z, 0, 15), Catch::Contains("of 2 elements"));
}


TEST_CASE("sculpt::fake_quant_rows: its graph node refuses an input modified in place",
          "[kernels]") {
  namespace k = sculpt::kernels;
  const at::Tensor s = torch::full({1}, 0.01), z = torch::zeros({1});
  at::Tensor x = (torch::randn({3, 50}) * 4).requires_grad_(true);
  at::Tensor h = x * 1.0;  // a non-leaf input, as a layer's activation is
  const at::Tensor y = k::fake_quant_rows(h, 1, s, z, -127, 127);  // values beyond the grid
  CHECK(y.grad_fn()->name() == "sculpt::FakeQuantRowsBackward");
  {
    torch::NoGradGuard no_grad;
    h.mul_(2.0);
  }
  CHECK_THROWS_WITH(y.sum().backward(), Catch::Contains("modified in place"));
}
TEST_CASE("sculpt::fake_quant equals ATen's fake_quantize_per_tensor/per_channel_affine and their backward",
          "[kernels][fake_quant]") {
  torch::manual_seed(14);
  for (auto shape : {std::vector<int64_t>{1000}, std::vector<int64_t>{31, 17},
                     std::vector<int64_t>{8, 3, 5, 5}})
    for (auto [qmin, qmax] : {std::pair<int64_t, int64_t>{0, 255}, {-128, 127}, {0, 15}, {-7, 7}}) {
      const at::Tensor x0 = torch::randn(shape) * 4.0;
      // Per tensor.
      const double scale = 0.05 + 0.01 * static_cast<double>(qmax - qmin > 100 ? 1 : 30);
      const int64_t zp = qmin < 0 ? 0 : (qmax + 1) / 3;
      auto xa = x0.clone().requires_grad_(true), xb = x0.clone().requires_grad_(true);
      auto ya = at::fake_quantize_per_tensor_affine(xa, scale, zp, qmin, qmax);
      auto yb = k::fake_quant(xb, torch::full({1}, scale), torch::full({1}, double(zp)),
                              std::nullopt, qmin, qmax);
      CHECK((ya - yb).abs().max().item<double>() <= 1e-6);
      const at::Tensor w = torch::randn(shape);
      (ya * w).sum().backward();
      (yb * w).sum().backward();
      CHECK((xa.grad() - xb.grad()).abs().max().item<double>() <= 1e-6);
      // Per channel along every axis.
      for (int64_t axis = 0; axis < x0.dim(); ++axis) {
        auto [s, z] = random_qparams(x0.size(axis), qmin, qmax, qmin < 0);
        auto xc = x0.clone().requires_grad_(true), xd = x0.clone().requires_grad_(true);
        auto yc = at::fake_quantize_per_channel_affine(xc, s, z.to(torch::kInt), axis, qmin, qmax);
        auto yd = k::fake_quant(xd, s, z, axis, qmin, qmax);
        INFO("axis " << axis << " qmin " << qmin << " qmax " << qmax);
        CHECK((yc - yd).abs().max().item<double>() <= 1e-6);
        (yc * w).sum().backward();
        (yd * w).sum().backward();
        CHECK((xc.grad() - xd.grad()).abs().max().item<double>() <= 1e-6);
      }
    }
}

namespace {
// ATen's learnable fake-quant (axis < 0: per tensor) and ours on the same inputs: outputs and
// the gradients of x, scale and zero point.
void compare_learnable(const at::Tensor& x0, const at::Tensor& w, int64_t axis, int64_t qmin,
                       int64_t qmax, double g) {
  auto [s0, z0] = random_qparams(axis < 0 ? 1 : x0.size(axis), qmin, qmax, qmin < 0);
  auto xa = x0.clone().requires_grad_(true), sa = s0.clone().requires_grad_(true),
       za = z0.clone().requires_grad_(true);
  auto xb = x0.clone().requires_grad_(true), sb = s0.clone().requires_grad_(true),
       zb = z0.clone().requires_grad_(true);
  auto ya = axis < 0 ? at::_fake_quantize_learnable_per_tensor_affine(xa, sa, za, qmin, qmax, g)
                     : at::_fake_quantize_learnable_per_channel_affine(xa, sa, za, axis, qmin, qmax, g);
  auto yb = k::fake_quant(xb, sb, zb, axis < 0 ? std::nullopt : std::optional<int64_t>(axis), qmin,
                          qmax, g);
  INFO("axis " << axis << " qmin " << qmin << " qmax " << qmax);
  CHECK((ya - yb).abs().max().item<double>() <= 1e-6);
  (ya * w).sum().backward();
  (yb * w).sum().backward();
  CHECK((xa.grad() - xb.grad()).abs().max().item<double>() <= 1e-6);
  CHECK(torch::allclose(sa.grad(), sb.grad(), 1e-4, 1e-5));
  CHECK(torch::allclose(za.grad(), zb.grad(), 1e-4, 1e-5));
  CHECK(sa.grad().abs().sum().item<double>() > 0);
}
}  // namespace

TEST_CASE("sculpt::fake_quant LSQ gradients equal ATen's _fake_quantize_learnable_* ops",
          "[kernels][fake_quant]") {
  torch::manual_seed(15);
  for (auto shape : {std::vector<int64_t>{4097}, std::vector<int64_t>{16, 33}})
    for (auto [qmin, qmax] : {std::pair<int64_t, int64_t>{0, 255}, {0, 15}, {-8, 7}}) {
      const at::Tensor x0 = torch::randn(shape) * 3.0;
      const at::Tensor w = torch::randn(shape);
      const double g = 1.0 / std::sqrt(static_cast<double>(x0.numel()) * static_cast<double>(qmax));
      compare_learnable(x0, w, -1, qmin, qmax, g);
      // Per channel on 2-D inputs only: ATen's per-channel learnable backward fails on 1-D
      // ("returned an invalid gradient at index 1 - got []").
      for (int64_t axis = 0; axis < (x0.dim() > 1 ? x0.dim() : 0); ++axis)
        compare_learnable(x0, w, axis, qmin, qmax, g);
    }
}

TEST_CASE("sculpt::fake_quant rejects mismatched qparams and bad ranges with clear messages",
          "[kernels][fake_quant]") {
  const at::Tensor x = torch::randn({4, 5});
  CHECK_THROWS_WITH(k::fake_quant(x, torch::ones({3}), torch::zeros({3}), 1, 0, 255),
                    Catch::Contains("needs 5 scale(s)"));
  CHECK_THROWS_WITH(k::fake_quant(x, torch::ones({1}), torch::zeros({1}), 2, 0, 255),
                    Catch::Contains("axis 2 is out of range"));
  CHECK_THROWS_WITH(k::fake_quant(x, torch::ones({1}), torch::zeros({1}), std::nullopt, 5, 5),
                    Catch::Contains("quant_min 5 must be < quant_max 5"));
  CHECK_THROWS_WITH(k::fake_quant(x.to(torch::kInt), torch::ones({1}), torch::zeros({1}), std::nullopt, 0, 5),
                    Catch::Contains("x must be float32"));
  // Empty input: an empty output of the same shape.
  CHECK(k::fake_quant(torch::randn({0, 3}), torch::ones({3}), torch::zeros({3}), 1, 0, 15).sizes() ==
        at::IntArrayRef{0, 3});
}
