// Distillation losses against direct ATen computations of their formulas.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include "cli/app.h"
#include "compression/passes/distill/distill_losses.h"
#include "core/config/config.h"
#include "core/data/dataset.h"
#include "core/models/model.h"

using namespace sculpt::compression;

TEST_CASE("logit KD is tau^2 KL(p_t || p_s) with the gradient tau (p_s - p_t) / N", "[distill]") {
  torch::manual_seed(0);
  for (double tau : {1.0, 3.0, 7.5}) {
    auto s = torch::randn({8, 10}, torch::kDouble).requires_grad_(true);
    auto t = torch::randn({8, 10}, torch::kDouble) * 3;
    auto loss = kd_kl_loss(s, t, tau);
    // The same quantity through ATen's kl_div (sum over classes, mean over rows).
    auto ref = tau * tau *
               at::kl_div((s / tau).log_softmax(-1).to(torch::kFloat),
                          (t / tau).softmax(-1).to(torch::kFloat), at::Reduction::Sum) /
               8.0;
    CHECK(loss.item<double>() == Approx(ref.item<double>()).epsilon(1e-6));
    loss.backward();
    auto expected = tau * ((s.detach() / tau).softmax(-1) - (t / tau).softmax(-1)) / 8.0;
    CHECK(torch::allclose(s.grad().to(torch::kDouble), expected, 1e-6, 1e-6));
  }
}

TEST_CASE("per-token KD averages over the kept positions only", "[distill]") {
  torch::manual_seed(1);
  auto s = torch::randn({2, 3, 6}), t = torch::randn({2, 3, 6});
  auto keep = torch::tensor({1, 1, 0, 1, 0, 0}, torch::kBool).view({2, 3});
  auto loss = kd_kl_loss(s, t, 2.0, keep);
  // Only rows (0,0), (0,1), (1,0) count.
  auto rows = torch::tensor({0, 1, 3}, torch::kLong);
  auto ref = kd_kl_loss(s.view({6, 6}).index_select(0, rows), t.view({6, 6}).index_select(0, rows),
                        2.0);
  CHECK(loss.item<double>() == Approx(ref.item<double>()).epsilon(1e-6));
  auto changed = s.clone();
  changed[1][2].fill_(100.0);  // a padded position
  CHECK(kd_kl_loss(changed, t, 2.0, keep).item<double>() == Approx(loss.item<double>()));
}

TEST_CASE("ranking distillation charges every pair the student orders against the teacher",
          "[distill]") {
  auto teacher = torch::tensor({3.0, 2.0, 1.0}).view({1, 3});
  auto student = torch::tensor({1.0, 2.0, 3.0}).view({1, 3});
  // Pairs (0,1): 0-(1-2) = 1, (0,2): 2, (1,2): 1 -> mean 4/3.
  CHECK(ranking_loss(student, teacher, 3, 0.0).item<double>() == Approx(4.0 / 3.0));
  CHECK(ranking_loss(teacher, teacher, 3, 0.0).item<double>() == 0.0);
  // With a margin of 2 the teacher's own scores (gaps 1, 2, 1) still cost 1, 0, 1.
  CHECK(ranking_loss(teacher, teacher, 3, 2.0).item<double>() == Approx(2.0 / 3.0));
  // top 2: only the pair (0, 1).
  CHECK(ranking_loss(student, teacher, 2, 0.0).item<double>() == Approx(1.0));
}

TEST_CASE("relational KD ignores the scale of the embedding space", "[distill]") {
  torch::manual_seed(2);
  auto t = torch::randn({6, 5});
  CHECK(relational_loss(2.5 * t, t).item<double>() == Approx(0.0).margin(1e-6));
  CHECK(relational_loss(torch::randn({6, 5}), t).item<double>() > 1e-3);
  CHECK(feature_loss(t, t).item<double>() == 0.0);
  CHECK_THROWS_WITH(feature_loss(torch::randn({6, 4}), t), Catch::Contains("differ in size"));
}

TEST_CASE("recorded attention maps equal what the fused kernel computes", "[distill]") {
  sculpt::cli::register_builtins();
  auto cfg = sculpt::config::Config::parse(
      "data: {name: synthetic_blobs}\nmodel: {name: transformer_lm, d_model: 16, heads: 2}\n");
  sculpt::data::DataSpec spec;
  spec.input_shape = {6};
  spec.vocab_size = 9;
  auto m = sculpt::models::model_registry().create(cfg.model.name, cfg.model, spec);
  m->eval();
  auto ids = torch::randint(0, 9, {3, 6}, torch::kLong);
  auto fused = m->forward(ids);
  sculpt::models::AttentionRecorder* rec = nullptr;
  for (const auto& mod : m->named_modules("", /*include_self=*/false))
    if (mod.key() == "layer1.layer.self_attn")
      rec = dynamic_cast<sculpt::models::AttentionRecorder*>(mod.value().get());
  REQUIRE(rec != nullptr);
  rec->record_attention(true);
  auto explicit_out = m->forward(ids);
  CHECK(torch::allclose(explicit_out, fused, 1e-5, 1e-5));
  const auto& maps = rec->attention();
  REQUIRE(maps.sizes() == torch::IntArrayRef({3, 2, 6, 6}));
  CHECK(torch::allclose(maps.sum(-1), torch::ones({3, 2, 6}), 1e-6, 1e-6));
  CHECK(maps.triu(1).abs().max().item<double>() == 0.0);  // causal: nothing above the diagonal
}
