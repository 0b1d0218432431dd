// Pruning (issue 7): schedules against their closed forms; n:m, block and channel masks have
// exactly their pattern; the global allocator meets its budget within bounds; masks survive
// optimizer steps with SGD momentum and Adam (weights and optimizer state stay zero); channel
// removal gives the masked model's outputs on a smaller dense model that a fresh model loads.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <set>

#include "cli/app.h"
#include "compression/pass.h"
#include "compression/passes/prune/bsr.h"
#include "compression/fisher_board.h"
#include "compression/passes/prune/prune_core.h"
#include "core/config/config.h"
#include "core/data/dataset.h"
#include "core/data/loader.h"
#include "core/models/model.h"
#include "tests/unit/prune_test_support.h"
#include "core/nn/layers.h"

namespace prune = sculpt::compression::prune;
using sculpt::config::Config;
using namespace sculpt::test;

TEST_CASE("prune schedules follow their closed forms", "[prune]") {
  prune::Schedule s;
  s.kind = prune::ScheduleKind::agp;
  s.initial = 0.1;
  s.final = 0.9;
  s.start = 100;
  s.end = 1100;
  s.every = 100;
  auto agp = [&](double t) { return 0.9 + (0.1 - 0.9) * std::pow(1 - (t - 100) / 1000, 3); };
  CHECK(prune::planned_sparsity(s, 0) == 0.1);
  CHECK(prune::planned_sparsity(s, 100) == Approx(0.1));
  CHECK(prune::planned_sparsity(s, 600) == Approx(agp(600)));
  CHECK(prune::planned_sparsity(s, 650) == Approx(agp(600)));  // held between updates
  CHECK(prune::planned_sparsity(s, 1100) == 0.9);
  CHECK(prune::planned_sparsity(s, 5000) == 0.9);
  CHECK_FALSE(prune::update_due(s, 99));
  CHECK(prune::update_due(s, 100));
  CHECK_FALSE(prune::update_due(s, 150));
  CHECK(prune::update_due(s, 1100));
  CHECK_FALSE(prune::update_due(s, 1200));

  s.kind = prune::ScheduleKind::one_shot;
  CHECK(prune::planned_sparsity(s, 99) == 0.1);
  CHECK(prune::planned_sparsity(s, 100) == 0.9);
  CHECK(prune::update_due(s, 100));
  CHECK_FALSE(prune::update_due(s, 200));

  s.kind = prune::ScheduleKind::exponential;
  // density 0.9 -> 0.1 geometrically: 1 - s = 0.9 (1/9)^f
  CHECK(prune::planned_sparsity(s, 600) == Approx(1 - 0.9 * std::pow(0.1 / 0.9, 0.5)));
  CHECK(prune::planned_sparsity(s, 1100) == 0.9);

  s.kind = prune::ScheduleKind::iterative;
  s.cycles = 4;  // cycles of 250 steps from 100
  CHECK(prune::planned_sparsity(s, 100) == Approx(0.1 + 0.8 * 1 / 4));
  CHECK(prune::planned_sparsity(s, 349) == Approx(0.1 + 0.8 * 1 / 4));
  CHECK(prune::planned_sparsity(s, 350) == Approx(0.1 + 0.8 * 2 / 4));
  CHECK(prune::planned_sparsity(s, 850) == Approx(0.9));
  CHECK(prune::planned_sparsity(s, 2000) == Approx(0.9));
  CHECK(prune::update_due(s, 350));
  CHECK(prune::update_due(s, 850));
  CHECK_FALSE(prune::update_due(s, 1100));  // the 4 cycles are done

  s.kind = prune::ScheduleKind::rigl;
  s.rigl_alpha = 0.3;
  CHECK(prune::planned_sparsity(s, 100) == 0.9);
  CHECK(prune::planned_sparsity(s, 900) == 0.9);
  CHECK(prune::rigl_drop_fraction(s, 100) == 0);
  CHECK(prune::rigl_drop_fraction(s, 600) == Approx(0.15 * (1 + std::cos(M_PI * 0.5))));
  CHECK(prune::rigl_drop_fraction(s, 350) == Approx(0.15 * (1 + std::cos(M_PI * 0.25))));
  CHECK(prune::update_due(s, 1000));
  CHECK_FALSE(prune::update_due(s, 1100));
}

TEST_CASE("n:m, block and channel masks have exactly their pattern", "[prune]") {
  torch::manual_seed(1);
  SECTION("2:4 keeps the two largest of every four") {
    prune::Pattern p{prune::PatternKind::n_m, 2, 4, 4};
    auto scores = torch::rand({6, 16});
    auto mask = prune::select_units(prune::unit_scores(scores, p), prune::unit_sizes(6, 16, p),
                                    0.0, p);
    auto groups = mask.view({6, 4, 4});
    CHECK(torch::all(groups.sum(-1) == 2).item<bool>());
    auto kept_min = scores.view({6, 4, 4}).masked_fill(~groups, 2.0).amin(-1);
    auto dropped_max = scores.view({6, 4, 4}).masked_fill(groups, -1.0).amax(-1);
    CHECK(torch::all(kept_min > dropped_max).item<bool>());
    CHECK(prune::mask_sparsity(mask, prune::unit_sizes(6, 16, p)) == 0.5);
  }
  SECTION("4x4 blocks on a ragged 10x13 weight") {
    prune::Pattern p{prune::PatternKind::block, 2, 4, 4};
    auto scores = torch::rand({10, 13});
    auto sizes = prune::unit_sizes(10, 13, p);
    CHECK(sizes.sizes() == torch::IntArrayRef({3, 4}));
    CHECK(sizes.sum().item<int64_t>() == 130);
    auto unit = prune::select_units(prune::unit_scores(scores, p), sizes, 0.5, p);
    auto full = prune::expand_mask(unit, 10, 13, p);
    CHECK(full.sizes() == torch::IntArrayRef({10, 13}));
    for (int64_t r = 0; r < 10; ++r)
      for (int64_t c = 0; c < 13; ++c)
        CHECK(full[r][c].item<bool>() == unit[r / 4][c / 4].item<bool>());
    const double s = prune::mask_sparsity(unit, sizes);
    CHECK(s <= 0.5);
    CHECK(s > 0.5 - 16.0 / 130);  // at most one block short
    CHECK(1 - full.to(torch::kDouble).mean().item<double>() == Approx(s));
  }
  SECTION("channels: whole rows go, the lowest mean scores first") {
    prune::Pattern p{prune::PatternKind::channel, 2, 4, 4};
    auto scores = torch::arange(8, torch::kFloat).unsqueeze(1).expand({8, 5}).contiguous();
    auto unit = prune::select_units(prune::unit_scores(scores, p), prune::unit_sizes(8, 5, p),
                                    0.5, p);
    CHECK(torch::equal(unit, torch::tensor({0, 0, 0, 0, 1, 1, 1, 1}).to(torch::kBool)));
  }
  SECTION("heads: whole groups of input columns go") {
    prune::Pattern p{prune::PatternKind::head, 2, 4, 4, 3};
    auto scores = torch::rand({8, 12});
    scores.narrow(1, 4, 4).mul_(0.01);  // head 1 is the weakest
    auto sizes = prune::unit_sizes(8, 12, p);
    CHECK(torch::equal(sizes, torch::full({3}, 32, torch::kLong)));
    auto unit = prune::select_units(prune::unit_scores(scores, p), sizes, 0.4, p);
    CHECK(torch::equal(unit, torch::tensor({1, 0, 1}).to(torch::kBool)));
    auto full = prune::expand_mask(unit, 8, 12, p);
    CHECK_FALSE(full.narrow(1, 4, 4).any().item<bool>());
    CHECK(full.narrow(1, 0, 4).all().item<bool>());
    CHECK(full.narrow(1, 8, 4).all().item<bool>());
  }
  SECTION("unstructured removes exactly floor(s * n)") {
    prune::Pattern p;
    auto scores = torch::rand({7, 9});
    auto unit = prune::select_units(scores, prune::unit_sizes(7, 9, p), 0.9, p);
    CHECK((~unit).sum().item<int64_t>() == 56);
    CHECK(scores.masked_select(unit).min().item<float>() >=
          scores.masked_select(~unit).max().item<float>());
  }
  SECTION("masks pack into bits and back") {
    auto m = torch::rand({13, 7}) > 0.5;
    auto packed = prune::pack_bits(m);
    CHECK(packed.numel() == 12);
    CHECK(torch::equal(prune::unpack_bits(packed, {13, 7}), m));
  }
}

TEST_CASE("a global budget is met within each layer's bounds", "[prune]") {
  torch::manual_seed(2);
  prune::Pattern p;
  std::vector<at::Tensor> scores = {torch::rand({20, 10}).to(torch::kDouble),
                                    (torch::rand({40, 10}) * 10).to(torch::kDouble)};
  std::vector<at::Tensor> sizes = {prune::unit_sizes(20, 10, p), prune::unit_sizes(40, 10, p)};
  auto f = prune::allocate_global(scores, sizes, 0.5, {0, 0}, {1, 1});
  CHECK(f[0] * 200 + f[1] * 400 == Approx(300).margin(1));
  CHECK(f[0] > f[1]);  // the small-scale layer loses more
  auto bounded = prune::allocate_global(scores, sizes, 0.5, {0, 0}, {0.6, 1});
  CHECK(bounded[0] <= 0.6 + 1e-12);
  CHECK(bounded[0] * 200 + bounded[1] * 400 == Approx(300).margin(1));
}

namespace {

const char* kRun =
    "model: {name: mlp, hidden: [16, 12]}\n"
    "data: {name: synthetic_blobs, samples: 64, features: 8, classes: 3}\n";

// The mlp of kRun with the pass of `item` attached (as the trainer does, without an optimizer).
struct Attached {
  std::unique_ptr<sculpt::models::Model> model;
  std::shared_ptr<sculpt::trainers::Callback> pass;
  sculpt::trainers::StepContext ctx;
};
Attached attach(const std::string& item) {
  sculpt::cli::register_builtins();
  const auto cfg = Config::parse(std::string(kRun) + "compression: [" + item + "]\n");
  Attached a{model_for(cfg, blobs_spec()), the_pass(cfg), {}};
  a.ctx.total_steps = 10;
  a.pass->attach(*a.model, a.ctx);
  return a;
}

// One optimizer step on a random batch, the hooks in the trainer's order; `before_step` runs
// between after_backward and the optimizer step (gradients in place).
void step_once(Attached& a, torch::optim::Optimizer& optim, int64_t step,
               const std::function<void()>& before_step = {}) {
  a.ctx.step = step;
  a.ctx.optimizer = &optim;
  sculpt::data::Batch batch;
  a.pass->on_batch(batch, a.ctx);
  optim.zero_grad();
  a.model->forward(torch::randn({16, 8})).pow(2).mean().backward();
  a.pass->after_backward(*a.model, a.ctx);
  if (before_step) before_step();
  optim.step();
  a.ctx.step = step + 1;
  a.pass->after_step(*a.model, a.ctx);
}

}  // namespace

TEST_CASE("rigl keeps the density and moves the mask: weak weights out, large gradients in",
          "[prune]") {
  torch::manual_seed(9);
  auto a = attach(
      "{name: prune, schedule: rigl, sparsity: 0.5, start: 0, end: 8, every: 2, rigl_alpha: 0.5, "
      "include: ['hidden0.*']}");
  const auto& w = sculpt::nn::compressible_layers(*a.model)[0].second->raw_weight();
  auto kept = [&] { return (w != 0).clone(); };
  const auto first = kept();
  CHECK(first.to(torch::kDouble).mean().item<double>() == 0.5);  // pruned at attach (start 0)
  torch::optim::SGD optim(a.model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  for (int64_t step = 0; step < 8; ++step) {
    step_once(a, optim, step);
    // Regrown weights start at zero and may stay there for a step: count the mask, not w.
    const auto s = a.pass->summary()["layers"][0]["sparsity"].get<double>();
    CHECK(s == 0.5);
  }
  const auto last = kept();
  CHECK_FALSE(torch::equal(first, last));
  // Updates at steps 2, 4, 6 with drop fractions 0.25 (1 + cos(pi t / 8)).
  CHECK(a.pass->summary()["charts"]["actual sparsity"].size() == 4);
}

TEST_CASE("prune in epochs counts the trainer's steps per epoch (this rank's shard)", "[prune]") {
  // Under DDP an epoch is fewer steps per rank than the whole split makes: the pass uses the
  // trainer's figure, as resolve_step does for the other passes.
  sculpt::cli::register_builtins();
  const auto cfg = Config::parse(std::string(kRun) +
                                 "compression: [{name: prune, unit: epochs, schedule: one_shot, "
                                 "sparsity: 0.5, start: 2, include: ['hidden0.*']}]\n");
  auto model = model_for(cfg, blobs_spec());
  auto pass = the_pass(cfg);
  sculpt::trainers::StepContext ctx;
  ctx.total_steps = 40;
  ctx.steps_per_epoch = 5;  // start: 2 epochs = step 10
  pass->attach(*model, ctx);
  const auto& w = sculpt::nn::compressible_layers(*model)[0].second->raw_weight();
  for (int64_t step = 1; step <= 10; ++step) {
    ctx.step = step;
    pass->after_step(*model, ctx);
    const double zeros = (w == 0).to(torch::kDouble).mean().item<double>();
    INFO("step " << step);
    CHECK(zeros == (step < 10 ? 0.0 : 0.5));
  }
}

TEST_CASE("taylor keeps the weights with the largest |w * grad| summed since the last update",
          "[prune]") {
  torch::manual_seed(10);
  auto a = attach(
      "{name: prune, scorer: taylor, schedule: one_shot, sparsity: 0.5, start: 2, "
      "include: ['hidden0.*']}");
  auto& w = const_cast<at::Tensor&>(sculpt::nn::compressible_layers(*a.model)[0].second->raw_weight());
  torch::optim::SGD optim(a.model->parameters(), torch::optim::SGDOptions(0.0));  // w stays put
  at::Tensor score = torch::zeros_like(w);
  for (int64_t step = 0; step < 2; ++step)
    step_once(a, optim, step, [&] { score += (w.detach() * w.grad()).abs(); });
  const auto kept = (w != 0);
  CHECK(kept.to(torch::kDouble).mean().item<double>() == 0.5);
  CHECK(score.masked_select(kept).min().item<float>() >=
        score.masked_select(~kept).max().item<float>());
}

TEST_CASE("fisher keeps the weights with the largest F w^2 / 2, F the mean squared gradient",
          "[prune]") {
  torch::manual_seed(12);
  auto a = attach(
      "{name: prune, scorer: fisher, schedule: one_shot, sparsity: 0.5, start: 3, "
      "include: ['hidden0.*']}");
  auto& w = const_cast<at::Tensor&>(sculpt::nn::compressible_layers(*a.model)[0].second->raw_weight());
  torch::optim::SGD optim(a.model->parameters(), torch::optim::SGDOptions(0.0));  // w stays put
  at::Tensor g2 = torch::zeros_like(w);
  const auto w0 = w.detach().clone();  // the weights before pruning (lr 0: they stay put)
  for (int64_t step = 0; step < 3; ++step)
    step_once(a, optim, step, [&] { g2 += w.grad().square(); });
  const auto score = g2 / 3 * w0.square() * 0.5;
  const auto kept = (w != 0);
  CHECK(kept.to(torch::kDouble).mean().item<double>() == 0.5);
  CHECK(score.masked_select(kept).min().item<float>() >=
        score.masked_select(~kept).max().item<float>());
  // Not the magnitude ranking: the gradients reorder it.
  const auto median = std::get<0>(w0.abs().flatten().kthvalue(w0.numel() / 2 + 1));
  CHECK((kept != (w0.abs() >= median)).sum().item<int64_t>() > 0);

  // A Fisher another pass published (EWC's, per sample) replaces the scorer's own estimate.
  auto b = attach(
      "{name: prune, scorer: fisher, schedule: one_shot, sparsity: 0.5, start: 2, "
      "include: ['hidden0.*']}");
  auto& wb = const_cast<at::Tensor&>(sculpt::nn::compressible_layers(*b.model)[0].second->raw_weight());
  const auto published = torch::rand_like(wb);
  auto board = std::make_shared<sculpt::compression::FisherBoard>();
  dynamic_cast<sculpt::compression::FisherBoardUser&>(*b.pass).set_fisher_board(board);
  board->publish(wb, published);
  const auto wb0 = wb.detach().clone();
  torch::optim::SGD optim_b(b.model->parameters(), torch::optim::SGDOptions(0.0));
  for (int64_t step = 0; step < 2; ++step) step_once(b, optim_b, step);
  board->withdraw(wb);
  const auto kept_b = (wb != 0);
  const auto score_b = published * wb0.square();
  CHECK(score_b.masked_select(kept_b).min().item<float>() >=
        score_b.masked_select(~kept_b).max().item<float>());
}

TEST_CASE("pruned weights and their SGD momentum / Adam moments stay zero", "[prune]") {
  sculpt::cli::register_builtins();
  for (const std::string opt : {"sgd", "adam"}) {
    INFO("optimizer " << opt);
    torch::manual_seed(3);
    auto a = attach(
        "{name: prune, schedule: agp, sparsity: 0.8, start: 2, end: 6, every: 2, "
        "exclude: ['head.*']}");
    auto& model = a.model;
    auto& pass = a.pass;
    auto& ctx = a.ctx;
    std::unique_ptr<torch::optim::Optimizer> optim;
    if (opt == "sgd")
      optim = std::make_unique<torch::optim::SGD>(model->parameters(),
                                                   torch::optim::SGDOptions(0.1).momentum(0.9));
    else
      optim = std::make_unique<torch::optim::Adam>(model->parameters(),
                                                    torch::optim::AdamOptions(0.01));
    ctx.optimizer = optim.get();
    auto layers = sculpt::nn::compressible_layers(*model);
    for (int64_t step = 0; step < 10; ++step) {
      step_once(a, *optim, step);
      for (size_t i = 0; i + 1 < layers.size(); ++i) {
        const auto& w = layers[i].second->raw_weight();
        const auto zeros = (w == 0);
        const double s = zeros.to(torch::kDouble).mean().item<double>();
        if (step + 1 >= 6) CHECK(s == Approx(0.8).margin(0.01));
        auto& state = *optim->state().at(w.unsafeGetTensorImpl());
        if (opt == "sgd") {
          auto& m = dynamic_cast<torch::optim::SGDParamState&>(state).momentum_buffer();
          CHECK(m.masked_select(zeros).abs().sum().item<double>() == 0);
        } else {
          auto& a = dynamic_cast<torch::optim::AdamParamState&>(state);
          CHECK(a.exp_avg().masked_select(zeros).abs().sum().item<double>() == 0);
          CHECK(a.exp_avg_sq().masked_select(zeros).abs().sum().item<double>() == 0);
        }
        // The effective weight is the raw weight: the mask holds.
        CHECK(torch::equal(layers[i].second->effective_weight(), w));
      }
    }
    const auto summary = pass->summary();
    CHECK(summary["layers"].size() == 2);
    CHECK(summary["layers"][0]["sparsity"].get<double>() == Approx(0.8).margin(0.01));
    const auto& planned = summary["charts"]["planned sparsity"];
    REQUIRE(planned.size() == 3);  // updates at steps 2, 4, 6
    CHECK(planned[0] == nlohmann::json::array({2, 0.0}));
    CHECK(planned[2] == nlohmann::json::array({6, 0.8}));
    CHECK(summary["charts"]["actual sparsity"][2][1].get<double>() == Approx(0.8).margin(0.01));
  }
}

TEST_CASE("initial_sparsity from_weights keeps the zeros of the starting weights", "[prune]") {
  sculpt::cli::register_builtins();
  const auto cfg = Config::parse(std::string(kRun) +
                                 "compression: [{name: prune, schedule: one_shot, sparsity: 0.6, "
                                 "start: 5, initial_sparsity: from_weights, include: ['hidden0.*']}]\n");
  auto model = model_for(cfg, blobs_spec());
  auto w = sculpt::nn::compressible_layers(*model)[0].second->raw_weight();
  {
    torch::NoGradGuard no_grad;
    w.narrow(0, 0, 4).zero_();  // 4 of 16 rows: 25%
  }
  const auto zeros = (w == 0).clone();
  auto pass = the_pass(cfg);
  sculpt::trainers::StepContext ctx;
  ctx.total_steps = 10;
  pass->attach(*model, ctx);
  CHECK(pass->summary()["layers"][0]["sparsity"].get<double>() == Approx(0.25));
  {
    torch::NoGradGuard no_grad;
    w.add_(1.0);  // an optimizer step that would regrow them
  }
  ctx.step = 1;
  pass->after_step(*model, ctx);
  CHECK(w.masked_select(zeros).abs().sum().item<double>() == 0);
}

TEST_CASE("prune config errors name the pass, key and layer", "[prune]") {
  sculpt::cli::register_builtins();
  CHECK_THROWS_WITH(Config::parse(std::string(kRun) +
                                  "compression: [{name: prune, initial_sparsity: lots}]\n"),
                    Catch::Contains("initial_sparsity"));
  const auto cfg = Config::parse(std::string(kRun) +
                                 "compression: [{name: prune, pattern: 'n:m', n: 2, m: 3}]\n");
  auto model = model_for(cfg, blobs_spec());
  auto pass = the_pass(cfg);
  sculpt::trainers::StepContext ctx;
  CHECK_THROWS_WITH(pass->attach(*model, ctx),
                    Catch::Contains("layer hidden0.seq.0 has 8 inputs per output, not a multiple "
                                    "of m = 3"));
  const auto ch = Config::parse(std::string(kRun) +
                                "compression: [{name: prune, pattern: channel}]\n");
  auto pass2 = the_pass(ch);
  auto model2 = model_for(ch, blobs_spec());
  CHECK_THROWS_WITH(pass2->attach(*model2, ctx), Catch::Contains("last layer head.seq.0"));
}

TEST_CASE("BSR: the block-sparse Linear equals the dense one", "[prune][bsr]") {
  torch::manual_seed(5);
  for (int64_t b : {4, 8}) {
    auto w = torch::randn({64, 48});
    auto keep = torch::rand({64 / b, 48 / b}) < 0.2;
    keep[0][0] = true;
    prune::Pattern p{prune::PatternKind::block, 2, 4, b};
    w = w * prune::expand_mask(keep, 64, 48, p);
    auto m = prune::to_bsr(w, b);
    CHECK(m.col.numel() == keep.sum().item<int64_t>());
    CHECK(torch::equal(prune::bsr_to_dense(m), w));
    auto bias = torch::randn({64});
    for (auto shape : {std::vector<int64_t>{7, 48}, std::vector<int64_t>{3, 5, 48}}) {
      auto x = torch::randn(shape);
      CHECK(torch::allclose(prune::bsr_linear(x, m, bias), torch::linear(x, w, bias), 1e-5, 1e-5));
    }
    auto x = torch::randn({2, 48});
    CHECK(torch::allclose(prune::bsr_linear(x, m, {}), torch::linear(x, w), 1e-5, 1e-5));
  }
}

TEST_CASE("LoRA: the merged model computes what the adapted one did", "[lora]") {
  sculpt::cli::register_builtins();
  torch::manual_seed(6);
  auto a = attach("{name: lora, rank: 4, alpha: 8, dropout: 0.1, include: ['hidden.*']}");
  auto& model = a.model;
  auto& pass = a.pass;
  auto& ctx = a.ctx;
  auto layers = sculpt::nn::compressible_layers(*model);
  CHECK_FALSE(layers[0].second->raw_weight().requires_grad());  // frozen base
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->named_parameters())
      if (p.key().find("wt_lora.b") != std::string::npos) p.value().normal_();
  }
  model->eval();  // no adapter dropout
  const auto x = torch::randn({6, 8});
  const auto adapted = model->forward(x).detach();
  const auto base = torch::linear(x, layers[0].second->raw_weight(), layers[0].second->bias());
  pass->finalize(*model, ctx);
  for (const auto& [n, l] : layers) CHECK_FALSE(l->has_transforms());
  CHECK(layers[0].second->raw_weight().requires_grad());
  CHECK(torch::allclose(model->forward(x), adapted, 1e-5, 1e-5));
  CHECK_FALSE(torch::allclose(torch::linear(x, layers[0].second->raw_weight(),
                                            layers[0].second->bias()), base));
  CHECK(pass->summary()["adapter_params"] == 4 * (8 + 16) + 4 * (16 + 12));
}

TEST_CASE("LoRA trains only the adapters, as PEFT; bias and modules_to_save add to them",
          "[lora]") {
  auto trainable = [](Attached& a) {
    std::set<std::string> s;
    for (const auto& p : a.model->named_parameters())
      if (p.value().requires_grad()) s.insert(p.key());
    return s;
  };
  const std::set<std::string> adapters = {"hidden0.seq.0.wt_lora.a", "hidden0.seq.0.wt_lora.b",
                                          "hidden1.seq.0.wt_lora.a", "hidden1.seq.0.wt_lora.b"};
  auto with = [&](std::set<std::string> more) {
    more.insert(adapters.begin(), adapters.end());
    return more;
  };
  auto a = attach("{name: lora, rank: 2, include: ['hidden.*']}");
  CHECK(trainable(a) == adapters);  // bias: none, the head and every weight frozen
  CHECK(a.pass->summary()["frozen_params"] == 387);
  a = attach("{name: lora, rank: 2, include: ['hidden.*'], bias: lora_only}");
  CHECK(trainable(a) == with({"hidden0.seq.0.bias", "hidden1.seq.0.bias"}));
  a = attach("{name: lora, rank: 2, include: ['hidden.*'], bias: all}");
  CHECK(trainable(a) == with({"hidden0.seq.0.bias", "hidden1.seq.0.bias", "head.seq.0.bias"}));
  a = attach("{name: lora, rank: 2, include: ['hidden.*'], modules_to_save: ['head']}");
  CHECK(trainable(a) == with({"head.seq.0.weight", "head.seq.0.bias"}));
  CHECK(a.pass->summary()["trained_besides"].size() == 2);
  // The model leaves finalize trainable, as it came in.
  a.pass->finalize(*a.model, a.ctx);
  CHECK(trainable(a).size() == 6);
  // Per layer, freeze_base: false trains that layer's weight too.
  a = attach("{name: lora, rank: 2, include: ['hidden.*'], overrides: [{layers: 'hidden1.*', "
             "freeze_base: false}]}");
  CHECK(trainable(a) == with({"hidden1.seq.0.weight"}));
  a = attach("{name: lora, rank: 2, include: ['hidden.*'], freeze_base: false}");
  CHECK(trainable(a).size() == 6 + 4);
  CHECK_THROWS_WITH(attach("{name: lora, modules_to_save: ['classifier']}"),
                    Catch::Contains("modules_to_save: 'classifier' matches no module"));
}

TEST_CASE("LoRA before a channel-removing prune merges first (same outputs); after it, refused",
          "[lora][prune]") {
  sculpt::cli::register_builtins();
  const std::string prune = "{name: prune, pattern: channel, schedule: one_shot, sparsity: 0.5, "
                            "remove: true, include: ['hidden0.*']}";
  const std::string lora = "{name: lora, rank: 2, include: ['hidden.*']}";
  auto config = [](const std::string& items) {
    torch::manual_seed(4);
    return Config::parse(std::string(kRun) + "compression: [" + items + "]\n");
  };
  sculpt::trainers::StepContext ctx;
  ctx.total_steps = 10;
  {
    const auto cfg = config(lora + ", " + prune);
    auto model = model_for(cfg, blobs_spec());
    model->eval();
    const int64_t before = model->parameter_count();
    auto recipe = sculpt::compression::build_recipe(cfg);
    for (auto& p : recipe) p->attach(*model, ctx);  // one_shot: pruned at attach
    {
      torch::NoGradGuard no_grad;
      for (auto& p : model->named_parameters())
        if (p.key().find("wt_lora.b") != std::string::npos) p.value().normal_();
    }
    const auto x = torch::randn({5, 8});
    const auto masked = model->forward(x).detach();  // mask (W + B A)
    for (auto& p : recipe) p->finalize(*model, ctx);
    for (const auto& [n, l] : sculpt::nn::compressible_layers(*model))
      CHECK_FALSE(l->has_transforms());
    CHECK(torch::allclose(model->forward(x), masked, 1e-5, 1e-5));
    CHECK(model->parameter_count() < before);
  }
  const auto cfg = config(prune + ", " + lora);
  auto model = model_for(cfg, blobs_spec());
  auto recipe = sculpt::compression::build_recipe(cfg);
  recipe[0]->attach(*model, ctx);
  CHECK_THROWS_WITH(recipe[1]->attach(*model, ctx),
                    Catch::Contains("a prune pass is listed before it") &&
                        Catch::Contains("list lora before prune"));
}

TEST_CASE("lowrank keeps the energy asked for and runs as two thin GEMMs", "[lowrank]") {
  const auto cfg = seeded(
      7,
      "model: {name: mlp, hidden: [64]}\n"
      "data: {name: synthetic_blobs, samples: 64, features: 48, classes: 3}\n"
      "compression: [{name: lowrank, energy: 0.8, include: ['hidden0.*']}]\n");
  const auto spec = spec_of({48}, 3);
  auto model = model_for(cfg, spec);
  auto lin = sculpt::nn::compressible_layers(*model)[0].second;
  const auto w = lin->raw_weight().detach().clone();
  auto pass = the_pass(cfg);
  sculpt::trainers::StepContext ctx;
  pass->attach(*model, ctx);
  const int64_t k = pass->summary()["layers"][0]["rank"].get<int64_t>();
  auto s2 = torch::linalg_svdvals(w).pow(2);
  auto energy = [&](int64_t r) { return (s2.narrow(0, 0, r).sum() / s2.sum()).item<double>(); };
  CHECK(energy(k) >= 0.8);
  CHECK(energy(k - 1) < 0.8);
  const auto approx = lin->effective_weight().detach();
  CHECK((approx - w).pow(2).sum().item<double>() / w.pow(2).sum().item<double>() ==
        Approx(1 - energy(k)).margin(1e-4));
  model->eval();
  const auto x = torch::randn({5, 48});
  const auto factored = model->forward(x).detach();
  pass->finalize(*model, ctx);
  CHECK_FALSE(lin->has_transforms());
  CHECK(torch::allclose(model->forward(x), factored, 1e-4, 1e-5));
  CHECK(static_cast<bool>(lin->runtime()) == (k * (64 + 48) < 64 * 48));
}
