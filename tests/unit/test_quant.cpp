// Quantization numerics against ATen's fake_quantize ops and closed forms; observers on known
// inputs; BN folding; the integer runtime against the fake-quant forward.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <filesystem>

#include "compression/passes/quantize/int8_model.h"
#include "compression/passes/quantize/observers.h"
#include "compression/passes/quantize/qparams.h"
#include "compression/passes/quantize/quant_layer.h"
#include "core/error.h"
#include "core/models/model.h"
#include "core/nn/layers.h"
#include "tests/support/process.h"

using namespace sculpt::quant;

namespace {
QSpec spec(int bits, bool symmetric, Granularity g = Granularity::per_tensor, int64_t axis = 0,
           int64_t group = 0) {
  QSpec s;
  s.bits = bits;
  s.symmetric = symmetric;
  s.granularity = g;
  s.axis = axis;
  s.group_size = group;
  return s;
}
}  // namespace

TEST_CASE("grids: narrow signed symmetric, unsigned asymmetric", "[quant]") {
  CHECK(spec(8, true).qmin() == -127);
  CHECK(spec(8, true).qmax() == 127);
  CHECK(spec(4, true).qmin() == -7);
  CHECK(spec(8, false).qmin() == 0);
  CHECK(spec(8, false).qmax() == 255);
  CHECK(spec(2, false).qmax() == 3);
}

TEST_CASE("per-tensor fake quantization equals ATen's op, forward and gradient", "[quant]") {
  torch::manual_seed(0);
  for (auto [bits, sym] : {std::pair<int, bool>{8, true}, {8, false}, {4, true}, {3, false}}) {
    const QSpec s = spec(bits, sym);
    auto x = (torch::randn({64, 33}) * 2).requires_grad_(true);
    auto [lo, hi] = reduce_min_max(x * 0.7, s);  // some values clip
    const QParams qp = qparams_from_range(lo, hi, s);
    auto y = fake_quantize(x, qp);
    auto x2 = x.detach().clone().requires_grad_(true);
    auto ref = at::fake_quantize_per_tensor_affine(x2, qp.scale.item<double>(),
                                                   qp.zero_point.item<int64_t>(), s.qmin(), s.qmax());
    CHECK(torch::allclose(y, ref, 0, 1e-6));
    auto g = torch::randn_like(y);
    y.backward(g);
    ref.backward(g);
    CHECK(torch::allclose(x.grad(), x2.grad(), 0, 1e-6));
    CHECK(x.grad().eq(0).any().item<bool>());  // clipped values get no gradient
    // The composite formula (taken by non-float tensors) agrees with the fused float kernel.
    auto composite = fake_quantize(x.detach().to(torch::kDouble), qp).to(torch::kFloat);
    CHECK(torch::allclose(composite, ref.detach(), 0, 1e-5));
  }
}

TEST_CASE("per-channel fake quantization equals ATen's op on any axis", "[quant]") {
  torch::manual_seed(1);
  for (int64_t axis : {0, 1, 3}) {
    const QSpec s = spec(8, false, Granularity::per_channel, axis);
    auto x = torch::randn({4, 5, 3, 6}).requires_grad_(true);
    auto [lo, hi] = reduce_min_max(x * 0.8, s);
    const QParams qp = qparams_from_range(lo, hi, s);
    REQUIRE(qp.scale.numel() == x.size(axis));
    auto y = fake_quantize(x, qp);
    auto x2 = x.detach().clone().requires_grad_(true);
    auto ref = at::fake_quantize_per_channel_affine(x2, qp.scale.flatten(),
                                                    qp.zero_point.flatten().to(torch::kInt), axis,
                                                    s.qmin(), s.qmax());
    CHECK(torch::allclose(y, ref, 0, 1e-6));
    auto g = torch::randn_like(y);
    y.backward(g);
    ref.backward(g);
    CHECK(torch::allclose(x.grad(), x2.grad(), 0, 1e-6));
  }
}

TEST_CASE("per-group quantization is per-tensor quantization of each group", "[quant]") {
  torch::manual_seed(2);
  const QSpec s = spec(4, true, Granularity::per_group, 0, 8);
  auto w = torch::randn({3, 32});
  auto [lo, hi] = reduce_min_max(w, s);
  const QParams qp = qparams_from_range(lo, hi, s);
  auto y = fake_quantize(w, qp);
  for (int64_t r = 0; r < 3; ++r)
    for (int64_t g = 0; g < 4; ++g) {
      auto part = w[r].slice(0, g * 8, g * 8 + 8);
      auto [plo, phi] = reduce_min_max(part, spec(4, true));
      auto ref = fake_quantize(part, qparams_from_range(plo, phi, spec(4, true)));
      CHECK(torch::allclose(y[r].slice(0, g * 8, g * 8 + 8), ref, 0, 1e-7));
    }
  // Integer grid values round-trip through dequantize.
  auto q = quantize_to_int(w, qp);
  CHECK(q.min().item<int>() >= -7);
  CHECK(q.max().item<int>() <= 7);
  CHECK(torch::allclose(dequantize(q, qp, w.sizes()), y, 0, 1e-6));
}

TEST_CASE("rounding is half to even", "[quant]") {
  QParams qp;
  qp.spec = spec(8, true);
  qp.scale = torch::tensor(0.5f);
  qp.zero_point = torch::tensor(0.f);
  auto x = torch::tensor({0.25f, 0.75f, 1.25f, -0.25f, -0.75f});  // x/s = 0.5, 1.5, 2.5, ...
  auto q = quantize_to_int(x, qp);
  CHECK(q.equal(torch::tensor({0, 2, 2, 0, -2}, torch::kInt)));
  // The fused float kernel rounds the same way.
  CHECK(torch::equal(fake_quantize(x, qp), torch::tensor({0.f, 1.f, 1.f, 0.f, -1.f})));
}

TEST_CASE("LSQ gradients equal the formula in double", "[quant]") {
  torch::manual_seed(3);
  const QSpec s = spec(4, true, Granularity::per_channel, 0);
  auto x = (torch::randn({3, 20}, torch::kDouble) * 1.5).requires_grad_(true);
  auto scale = torch::tensor({0.1, 0.2, 0.05}, torch::kDouble).view({3, 1}).requires_grad_(true);
  auto zp = torch::zeros({3, 1}, torch::kDouble);
  const double g = 1.0 / std::sqrt(20.0 * 7.0);
  auto y = fake_quantize_lsq(x, scale, zp, s, g);
  auto up = torch::randn_like(y);
  y.backward(up);
  // d y / d s: round(x/s) - x/s inside [qmin, qmax], qmin or qmax outside; times g.
  auto v = x.detach() / scale.detach();
  auto r = v.round();
  auto ds = torch::where(r < -7, torch::full_like(v, -7.0),
                         torch::where(r > 7, torch::full_like(v, 7.0), r - v));
  auto expected_s = (up * ds).sum(1, true) * g;
  CHECK(torch::allclose(scale.grad(), expected_s, 0, 1e-12));
  auto inside = (r >= -7).logical_and(r <= 7).to(torch::kDouble);
  CHECK(torch::allclose(x.grad(), up * inside, 0, 1e-12));
  // And ATen's learnable op (per tensor, float) agrees on the scale gradient.
  auto xf = torch::randn({50}).requires_grad_(true);
  auto sf = torch::tensor({0.1f}).requires_grad_(true);
  auto ours = fake_quantize_lsq(xf, sf, torch::zeros({1}), spec(8, false), 0.5);
  auto xf2 = xf.detach().clone().requires_grad_(true);
  auto sf2 = sf.detach().clone().requires_grad_(true);
  auto zf2 = torch::zeros({1}).requires_grad_(true);
  auto theirs = at::_fake_quantize_learnable_per_tensor_affine(xf2, sf2, zf2, 0, 255, 0.5);
  CHECK(torch::allclose(ours, theirs, 0, 1e-6));
  ours.sum().backward();
  theirs.sum().backward();
  CHECK(sf.grad().item<float>() == Approx(sf2.grad().item<float>()).epsilon(1e-5));
}

TEST_CASE("observers: min/max, moving average and percentile in closed form", "[quant]") {
  ObserverOptions mm;
  ActivationObserver a(spec(8, false), mm);
  a.observe(torch::tensor({-1.f, 2.f}));
  a.observe(torch::tensor({0.5f, 3.f}));
  auto [lo, hi] = a.range();
  CHECK(lo.item<float>() == -1.f);
  CHECK(hi.item<float>() == 3.f);
  auto qp = a.qparams();
  CHECK(qp.scale.item<float>() == Approx(4.0 / 255));
  CHECK(qp.zero_point.item<float>() == std::round(0 - (-1.0) / (4.0 / 255)));

  ObserverOptions ma;
  ma.kind = ObserverKind::moving_average;
  ma.momentum = 0.25;
  ActivationObserver b(spec(8, false), ma);
  b.observe(torch::tensor({-1.f, 2.f}));
  b.observe(torch::tensor({1.f, 6.f}));
  auto [blo, bhi] = b.range();
  CHECK(blo.item<float>() == Approx(-1 + 0.25 * (1 - -1)));
  CHECK(bhi.item<float>() == Approx(2 + 0.25 * (6 - 2)));

  // 99th percentile of |x| for x uniform on [0, 1): 0.99, within a histogram bin (1/2048).
  torch::manual_seed(4);
  ObserverOptions pc;
  pc.kind = ObserverKind::percentile;
  pc.percentile = 99.0;
  QSpec unsigned_sym = spec(8, true);
  unsigned_sym.is_signed = false;
  ActivationObserver c(unsigned_sym, pc);
  for (int i = 0; i < 4; ++i) c.observe(torch::rand({250000}));
  CHECK(c.range().second.item<double>() == Approx(0.99).margin(2e-3));
  // Weights: the percentile of each channel directly (kth value).
  auto w = torch::arange(1, 101, torch::kFloat).repeat({2, 1});
  w[1] *= 2;
  auto [wlo, whi] = weight_range(w, spec(8, true, Granularity::per_channel, 0), pc);
  CHECK(whi.flatten()[0].item<float>() == 99.f);
  CHECK(whi.flatten()[1].item<float>() == 198.f);
  CHECK(wlo.flatten()[0].item<float>() == -99.f);
}

TEST_CASE("the fused QAT transforms (one kernel call each) equal the reference path bit for bit",
          "[quant]") {
  namespace qd = sculpt::compression::quantize_detail;
  torch::manual_seed(9);
  qd::Phase phase{true, true, false};
  // Weights: the range of the current tensor, qparams by the tensor path, fake_quantize.
  const ObserverOptions mm;
  for (const QSpec& ws :
       {spec(8, true, Granularity::per_channel, 0), spec(4, false, Granularity::per_channel, 0),
        spec(8, true), spec(3, false), spec(4, true, Granularity::per_group, 0, 16),
        spec(8, false, Granularity::per_group, 0, 8)}) {
    for (const std::vector<int64_t>& shape :
         {std::vector<int64_t>{64, 784}, {6, 2, 4, 4}, {10, 64}}) {
      CAPTURE(ws.describe(), shape);
      phase.observing = true;
      qd::QuantWeight qw(ws, mm, false, &phase);
      for (int step = 0; step < 3; ++step) {
        const at::Tensor w0 = torch::randn(shape) * (step + 1);
        auto w = w0.clone().requires_grad_(true), w2 = w0.clone().requires_grad_(true);
        qw.mark_dirty();
        const at::Tensor y = qw.forward(w);
        auto [lo, hi] = weight_range(w0, ws, mm);
        const QParams ref = qparams_from_range(lo.dim() ? lo : lo.reshape({1}),
                                               hi.dim() ? hi : hi.reshape({1}), ws);
        CHECK(torch::equal(qw.qp_.scale.flatten(), ref.scale.flatten()));
        CHECK(torch::equal(qw.qp_.zero_point.flatten(), ref.zero_point.flatten()));
        const at::Tensor ry = fake_quantize(w2, ref);
        CHECK(torch::equal(y, ry));
        const at::Tensor g = torch::randn(shape);
        y.backward(g);
        ry.backward(g);
        CHECK(torch::equal(w.grad(), w2.grad()));
      }
      // Observers frozen: the qparams stay, applied to new weights.
      phase.observing = false;
      const QParams kept = qw.qp_;
      const at::Tensor w0 = torch::randn(shape) * 3;
      CHECK(torch::equal(qw.forward(w0), fake_quantize(w0, kept)));
      CHECK(qw.qp_.scale.data_ptr() == kept.scale.data_ptr());
    }
  }
  // Inputs: a moving-average observer fed batch by batch, as ActivationObserver + fake_quantize.
  ObserverOptions ma;
  ma.kind = ObserverKind::moving_average;
  ma.momentum = 0.1;
  for (const QSpec& as : {spec(8, false), spec(8, true), spec(4, false)}) {
    CAPTURE(as.describe());
    phase.observing = true;
    qd::QuantInput qi(as, ma, false, false, 6.0, &phase);
    ActivationObserver ref(as, ma);
    bool clipped = false;
    for (int step = 0; step < 6; ++step) {
      const at::Tensor x0 = torch::randn({64, 100}) * (1 + step % 3) + 0.5;
      auto x = x0.clone().requires_grad_(true), x2 = x0.clone().requires_grad_(true);
      const at::Tensor y = qi.forward(x);
      ref.observe(x0);
      const QParams rq = ref.qparams();
      CHECK(torch::equal(qi.qp_.scale, rq.scale));
      CHECK(torch::equal(qi.qp_.zero_point, rq.zero_point));
      const at::Tensor ry = fake_quantize(x2, rq);
      CHECK(torch::equal(y, ry));
      const at::Tensor g = torch::randn_like(x0);
      y.backward(g);
      ry.backward(g);
      CHECK(torch::equal(x.grad(), x2.grad()));
      clipped = clipped || x.grad().eq(0).any().item<bool>();
    }
    CHECK(clipped);  // the moving range lags the wider batches
    CHECK(qi.observer_.batches() == ref.batches());
    CHECK(torch::equal(qi.observer_.range().second, ref.range().second));
    // Evaluation: no observing, the last qparams.
    qi.eval();
    const at::Tensor x0 = torch::randn({64, 100}) * 4;
    CHECK(torch::equal(qi.forward(x0), fake_quantize(x0, ref.qparams())));
    CHECK(qi.observer_.batches() == ref.batches());
  }
}

TEST_CASE("mse and entropy observers clip outliers that min/max keeps", "[quant]") {
  torch::manual_seed(5);
  auto x = torch::randn({20000});
  x[0] = 40.f;  // one outlier
  // One outlier: at 4 bits the MSE optimum clips it; KL calibration clips it at 8 bits.
  for (auto [kind, bits] : {std::pair<ObserverKind, int>{ObserverKind::mse, 4},
                            {ObserverKind::entropy, 8}}) {
    ObserverOptions o;
    o.kind = kind;
    ActivationObserver a(spec(bits, true), o);
    a.observe(x);
    const double t = a.range().second.item<double>();
    CHECK(t < 20.0);
    CHECK(t > 2.0);
    // Clipping lowers the error of the bulk of the values against min/max.
    auto bulk = x.slice(0, 1);
    ObserverOptions mm;
    ActivationObserver m(spec(bits, true), mm);
    m.observe(x);
    const double clipped = (bulk - fake_quantize(bulk, a.qparams())).pow(2).mean().item<double>();
    const double full = (bulk - fake_quantize(bulk, m.qparams())).pow(2).mean().item<double>();
    CHECK(clipped < full);
  }
  // Weight MSE search per channel never does worse than min/max.
  auto w = torch::randn({4, 64});
  w[2][3] = 15.f;
  const QSpec s = spec(4, true, Granularity::per_channel, 0);
  ObserverOptions mse;
  mse.kind = ObserverKind::mse;
  auto [l1, h1] = weight_range(w, s, mse);
  auto [l0, h0] = weight_range(w, s, ObserverOptions{});
  auto err = [&](const QParams& qp) { return (w - fake_quantize(w, qp)).pow(2).sum(1); };
  CHECK((err(qparams_from_range(l1, h1, s)) <= err(qparams_from_range(l0, h0, s)) + 1e-7)
            .all()
            .item<bool>());
}

TEST_CASE("bad quantization settings name the layer and the key", "[quant]") {
  QSpec s = spec(9, true);
  CHECK_THROWS_WITH(s.check({4, 4}, "layer fc1"), Catch::Contains("layer fc1") &&
                                                       Catch::Contains("bits 9 is outside 2..8"));
  s = spec(8, true, Granularity::per_channel, 2);
  CHECK_THROWS_WITH(s.check({4, 4}, "layer fc1"), Catch::Contains("axis 2 is beyond"));
  s = spec(8, true, Granularity::per_group, 0, 5);
  CHECK_THROWS_WITH(s.check({4, 12}, "layer fc1"),
                    Catch::Contains("group_size 5 does not divide the input dimension 12"));
  CHECK_THROWS_WITH(observer_kind("kl"), Catch::Contains("unknown observer 'kl'"));
}

TEST_CASE("a folded conv equals conv then BatchNorm in eval mode", "[quant]") {
  torch::manual_seed(6);
  for (bool with_bias : {false, true}) {
    sculpt::nn::Conv2d conv(3, 5, 3, 1, 1, with_bias);
    torch::nn::BatchNorm2d bn(5);
    {
      torch::NoGradGuard ng;
      bn->running_mean.normal_();
      bn->running_var.uniform_(0.5, 2.0);
      bn->weight.normal_();
      bn->bias.normal_();
    }
    bn->eval();
    auto x = torch::randn({2, 3, 8, 8});
    auto ref = bn->forward(conv.forward(x));
    auto [w, b] = fold_batchnorm(conv.raw_weight(), conv.bias(), *bn);
    auto folded = at::conv2d(x, w, b, {1, 1}, {1, 1});
    CHECK(torch::allclose(folded, ref, 1e-5, 1e-5));
  }
}

TEST_CASE("the int8 embedding runtime gathers the exported table's rows bit for bit", "[quant]") {
  // A one-block model: its token table quantized to 8 bits, exported and loaded again.
  struct TableBlock final : sculpt::models::Block {
    TableBlock() {
      tokens = register_module("tokens", std::make_shared<sculpt::nn::Embedding>(11, 6));
    }
    at::Tensor forward(const at::Tensor& x) override { return tokens->forward(x); }
    std::shared_ptr<sculpt::nn::Embedding> tokens;
  };
  auto make = [] {
    auto m = std::make_shared<sculpt::models::Model>("table");
    auto b = std::make_shared<TableBlock>();
    m->add_block("embed", b);
    return std::make_pair(m, b);
  };
  torch::manual_seed(8);
  const std::filesystem::path root = sculpt::test::temp_dir("int8-embedding");
  // Asymmetric grids are unsigned (0..255, stored shifted by -128): rows with grid values above
  // 127 must not wrap around.
  for (const bool symmetric : {true, false}) {
    for (const auto g : {Granularity::per_tensor, Granularity::per_channel}) {
      auto [model, block] = make();
      const at::Tensor w = block->tokens->raw_weight().detach();
      const bool per_row = g == Granularity::per_channel;
      ExportLayer e;
      e.name = "embed.tokens";
      e.layer = block->tokens;
      const QSpec s = spec(8, symmetric, g, 0);
      const auto [lo, hi] = reduce_min_max(w, s);
      e.weight = qparams_from_range(lo, hi, s);
      e.folded_weight = w;
      const auto dir = (root / (std::to_string(symmetric) + std::to_string(per_row))).string();
      export_quantized(*model, {e}, dir);
      auto [loaded, loaded_block] = make();
      load_quantized(*loaded, dir);
      torch::NoGradGuard no_grad;
      const auto ids = torch::tensor({{3, 0, 10, 3}, {7, 1, 2, 9}}, torch::kLong);
      const auto got = loaded->forward(ids);
      // load_quantized set the raw weight to the exported table, dequantized.
      const auto want = at::embedding(loaded_block->tokens->raw_weight(), ids);
      CHECK(got.sizes() == want.sizes());
      CHECK(torch::equal(got, want));
      const auto table = dequantize(quantize_to_int(w, e.weight), e.weight, w.sizes());
      CHECK(torch::equal(want, at::embedding(table, ids)));
      CHECK_THROWS_WITH(loaded->forward(torch::tensor({{11}}, torch::kLong)),
                        Catch::Contains("index 11 is out of range for 11 rows"));
    }
  }
  std::filesystem::remove_all(root);
}
