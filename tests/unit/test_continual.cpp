// Continual learning without a training loop: the GEM metrics of a hand-made accuracy matrix,
// the EWC Fisher against per-sample gradients written out by hand (softmax regression), the
// EWC penalty and its gradient against lambda/2 * sum F (w - w*)^2, the replay buffer's
// policies (reservoir probabilities, class balance, importance, exact resume), config mistakes.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include "compression/fisher_board.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "cli/app.h"
#include "compression/pass.h"
#include "compression/passes/continual/ewc.h"
#include "compression/passes/continual/replay.h"
#include "core/config/config.h"
#include "core/data/loader.h"
#include <ATen/CPUGeneratorImpl.h>
#include "core/config/errors.h"
#include "core/models/model.h"
#include "trainers/continual_metrics.h"
#include "tests/support/attached_pass.h"
#include "trainers/run_parts.h"

using sculpt::config::Config;

TEST_CASE("continual metrics follow the GEM definitions", "[continual]") {
  const double nan = std::nan("");
  // Row i: after increment i; R[i][i+1] measured before training i+1 (FWT), later ones not.
  sculpt::trainers::AccuracyMatrix r = {{0.9, 0.3, nan}, {0.6, 0.8, 0.2}, {0.7, 0.5, 0.95}};
  const std::vector<double> b = {0.1, 0.2, 0.1};
  auto m = sculpt::trainers::continual_metrics(r, b);
  CHECK(m["average_accuracy"].get<double>() == Approx((0.7 + 0.5 + 0.95) / 3));
  CHECK(m["bwt"].get<double>() == Approx(((0.7 - 0.9) + (0.5 - 0.8)) / 2));
  CHECK(m["fwt"].get<double>() == Approx(((0.3 - 0.2) + (0.2 - 0.1)) / 2));
  CHECK(m["forgetting"].get<double>() == Approx(((0.9 - 0.7) + (0.8 - 0.5)) / 2));
  // From the best past value: increment 0 peaked at 0.9 (row 0), increment 1 at 0.8 (row 1).
  CHECK(m["forgetting_from_best"].get<double>() == Approx(((0.9 - 0.7) + (0.8 - 0.5)) / 2));
  // After one increment there is no BWT/FWT yet.
  auto first = sculpt::trainers::continual_metrics({{0.9, 0.3}}, b);
  CHECK(first["average_accuracy"].get<double>() == Approx(0.9));
  CHECK_FALSE(first.contains("bwt"));
  CHECK_FALSE(first.contains("fwt"));
  // Best differs from right-after when an increment improved later.
  auto later = sculpt::trainers::continual_metrics({{0.5, 0.1}, {0.8, 0.9}, {0.6, 0.7}}, b);
  CHECK(later["forgetting"].get<double>() == Approx(((0.5 - 0.6) + (0.9 - 0.7)) / 2));
  CHECK(later["forgetting_from_best"].get<double>() == Approx(((0.8 - 0.6) + (0.9 - 0.7)) / 2));
  // JSON round trip keeps the unmeasured entries unmeasured.
  auto j = sculpt::trainers::matrix_json(r, 3);
  CHECK(j[0][2].is_null());
  auto back = sculpt::trainers::matrix_from_json(j);
  CHECK(std::isnan(back[0][2]));
  CHECK(back[2][2] == 0.95);
}

TEST_CASE("the EWC Fisher is the mean of per-sample squared gradients", "[continual][ewc]") {
  // Softmax regression: d(-log p_y)/dW = (p - onehot(y)) x^T, d/db = p - onehot(y).
  torch::manual_seed(3);
  const int64_t n = 12, d = 5, c = 4;
  auto w = torch::randn({c, d}, torch::kDouble).requires_grad_(true);
  auto bias = torch::randn({c}, torch::kDouble).requires_grad_(true);
  auto x = torch::randn({n, d}, torch::kDouble);
  auto y = torch::randint(0, c, {n}, torch::kLong);
  auto forward = [&](const at::Tensor& in) { return torch::addmm(bias, in, w.t()); };
  auto gen = at::make_generator<at::CPUGeneratorImpl>(0);
  sculpt::cli::register_builtins();
  sculpt::data::DataSpec spec;
  spec.num_classes = c;
  const auto task = sculpt::test::make_task("classification", spec);
  auto fisher = sculpt::compression::diagonal_fisher(*task, forward, {w, bias}, x, y, true, gen);
  auto fw = torch::zeros({c, d}, torch::kDouble), fb = torch::zeros({c}, torch::kDouble);
  {
    torch::NoGradGuard no_grad;
    for (int64_t i = 0; i < n; ++i) {
      auto p = torch::softmax(forward(x[i].unsqueeze(0)), -1)[0];
      auto e = p - torch::one_hot(y[i], c).to(torch::kDouble);
      fw += torch::outer(e, x[i]).pow(2);
      fb += e.pow(2);
    }
  }
  fw /= n;
  fb /= n;
  CHECK(torch::allclose(fisher[0].to(torch::kDouble), fw, 1e-5, 1e-6));
  CHECK(torch::allclose(fisher[1].to(torch::kDouble), fb, 1e-5, 1e-6));
  // Not the square of the batch-mean gradient, which is much smaller.
  auto mean_loss = torch::nn::functional::cross_entropy(forward(x), y);
  auto g = torch::autograd::grad({mean_loss}, {w})[0];
  CHECK(g.pow(2).sum().item<double>() < 0.5 * fw.sum().item<double>());

  // The true Fisher draws the labels from the model: the same with a fixed generator, and in
  // expectation sum_y p_y (p - e_y)^2 per entry of the bias.
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(9), g2 = at::make_generator<at::CPUGeneratorImpl>(9);
  auto t1 = sculpt::compression::diagonal_fisher(*task, forward, {w, bias}, x, y, false, g1);
  auto t2 = sculpt::compression::diagonal_fisher(*task, forward, {w, bias}, x, y, false, g2);
  CHECK(torch::equal(t1[1], t2[1]));
  auto many_x = x.repeat({200, 1});
  auto many = sculpt::compression::diagonal_fisher(*task, forward, {bias}, many_x, y.repeat({200}),
                                                   false, g1)[0];
  auto expected = torch::zeros({c}, torch::kDouble);
  {
    torch::NoGradGuard no_grad;
    for (int64_t i = 0; i < n; ++i) {
      auto p = torch::softmax(forward(x[i].unsqueeze(0)), -1)[0];
      for (int64_t k = 0; k < c; ++k)
        expected += p[k] * (p - torch::one_hot(torch::tensor(k), c).to(torch::kDouble)).pow(2);
    }
  }
  expected /= n;
  CHECK(torch::allclose(many.to(torch::kDouble), expected, 0.1, 0.01));
}

TEST_CASE("the EWC Fisher of a regression task is the Gaussian one, not a softmax's",
          "[continual][ewc]") {
  // f(x) = w.x + b, log p(y | x) = -(y - f)^2 / 2: d/dw = (y - f) x, d/db = y - f. (Read as
  // one-class logits, as before tasks gave the likelihood, every gradient would be zero.)
  torch::manual_seed(4);
  const int64_t n = 10, d = 3;
  auto w = torch::randn({1, d}, torch::kDouble).requires_grad_(true);
  auto bias = torch::randn({1}, torch::kDouble).requires_grad_(true);
  auto x = torch::randn({n, d}, torch::kDouble);
  auto y = torch::randn({n}, torch::kDouble);
  auto forward = [&](const at::Tensor& in) { return torch::addmm(bias, in, w.t()); };  // [B, 1]
  sculpt::cli::register_builtins();
  const auto task = sculpt::test::make_task("regression", sculpt::data::DataSpec{});
  auto gen = at::make_generator<at::CPUGeneratorImpl>(0);
  auto fisher = sculpt::compression::diagonal_fisher(*task, forward, {w, bias}, x, y, true, gen);
  const auto r = (y - forward(x).squeeze(1)).unsqueeze(1).detach();  // [n, 1]
  const auto fw = (r.square() * x.square()).mean(0, /*keepdim=*/true);
  const auto fb = r.square().mean(0);
  CHECK(fw.abs().sum().item<double>() > 0);
  CHECK(torch::allclose(fisher[0].to(torch::kDouble), fw, 1e-5, 1e-6));
  CHECK(torch::allclose(fisher[1].to(torch::kDouble), fb, 1e-5, 1e-6));
  // The true Fisher samples y ~ N(f, 1): in expectation E[(y - f)^2] = 1, so x^2 for w.
  auto many = sculpt::compression::diagonal_fisher(*task, forward, {w, bias}, x.repeat({400, 1}),
                                                   y.repeat({400}), false, gen);
  CHECK(many[1].item<double>() == Approx(1.0).epsilon(0.1));
  CHECK(torch::allclose(many[0].to(torch::kDouble), x.square().mean(0, true), 0.15, 0.01));
}

TEST_CASE("EWC's Fisher of a token sequence is the squared gradient of its log-likelihood",
          "[gr][ewc]") {
  torch::manual_seed(1);
  // A "model": logits [1, T, V] = W[input tokens] (a table lookup), T = 3, V = 5.
  auto w = torch::randn({7, 5}, torch::requires_grad());
  auto forward = [&](const at::Tensor& x) { return w.index_select(0, x.reshape({-1})).view({1, 3, 5}); };
  auto inputs = torch::tensor(std::vector<int64_t>{4, 5, 6, 1, 2, 3}, torch::kLong).view({2, 3});
  // Row 0: three real target tokens; row 1: one real token, then padding (ignored).
  auto targets = torch::tensor(std::vector<int64_t>{1, 2, 3, 4, sculpt::data::token::pad, sculpt::data::token::pad},
                               torch::kLong).view({2, 3});
  auto gen = at::make_generator<at::CPUGeneratorImpl>(0);
  sculpt::cli::register_builtins();
  sculpt::data::DataSpec spec;
  spec.vocab_size = 7;
  spec.source_len = 3;
  const auto task = sculpt::test::make_task("seq2seq", spec);
  auto f = sculpt::compression::diagonal_fisher(*task, forward, {w}, inputs, targets, true, gen);
  auto expected = torch::zeros({7, 5});
  for (int64_t i = 0; i < 2; ++i) {
    auto logp = forward(inputs[i]).log_softmax(-1)[0];
    auto nll = torch::zeros({});
    for (int64_t t = 0; t < 3; ++t) {
      const int64_t y = targets[i][t].item<int64_t>();
      if (y != sculpt::data::token::pad) nll = nll - logp[t][y];
    }
    auto g = torch::autograd::grad({nll}, {w})[0];
    expected += g.pow(2);
  }
  expected /= 2;
  CHECK(torch::allclose(f[0], expected, 1e-5, 1e-6));
}

TEST_CASE("the EWC pass's vectorized Fisher on Linear layers equals the per-sample loop",
          "[continual][ewc]") {
  sculpt::cli::register_builtins();
  for (const char* fisher : {"empirical", "true"}) {
    const auto cfg = Config::parse(
        std::string("model: {name: mlp, hidden: [16, 12]}\n"
                    "data: {name: synthetic_blobs, samples: 300, features: 8, classes: 3}\n"
                    "compression: [{name: ewc, samples: 0, fisher: ") +
        fisher + "}]\n");
    auto attached = sculpt::test::attach_first_pass(cfg);
    auto& model = attached.model();
    const auto& train = attached.parts.split.train;
    attached.pass().on_increment_end(model, train, attached.ctx);
    const auto summary = attached.pass().summary();
    CHECK(summary["fisher_method"] == "per-sample, vectorized over Linear layers");
    const auto state = attached.pass().state_dict();
    // The same rows through the same evaluation loader, one backward per sample.
    sculpt::data::Loader loader(
        train, 256, sculpt::data::LoaderOptions::for_evaluation(sculpt::config::DataConfig{}));
    std::vector<at::Tensor> xs, ys;
    sculpt::data::Batch b;
    while (loader.next(b)) xs.push_back(b.inputs), ys.push_back(b.targets);
    std::vector<std::string> names;
    std::vector<at::Tensor> params;
    for (const auto& p : model.named_parameters()) names.push_back(p.key()), params.push_back(p.value());
    model.eval();
    auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
    if (std::string(fisher) == "empirical") {
      auto loop = sculpt::compression::diagonal_fisher(
          *attached.ctx.task, [&](const at::Tensor& x) { return model.forward(x); }, params,
          torch::cat(xs),
          torch::cat(ys), true, gen);
      int compared = 0;
      for (const auto& [key, f] : state.tensors)
        for (size_t k = 0; k < names.size(); ++k)
          if (key == "0/fisher/" + names[k]) {
            CHECK(torch::allclose(f, loop[k], 1e-4, 1e-7));
            CHECK(f.abs().sum().item<double>() > 0);
            ++compared;
          }
      CHECK(compared == 6);  // three Linear layers, weight and bias
    } else {
      // Sampled labels y ~ p: the head bias's gradient is p - e_y, so its Fisher's trace has
      // the expectation mean_i sum_y p_y |p_i - e_y|^2 = mean_i (1 - |p_i|^2).
      REQUIRE(names.back().find("bias") != std::string::npos);
      at::Tensor head_bias;
      for (const auto& [key, f] : state.tensors)
        if (key == "0/fisher/" + names.back()) head_bias = f;
      REQUIRE(head_bias.defined());
      torch::NoGradGuard no_grad;
      const auto p = torch::softmax(model.forward(torch::cat(xs)), -1);
      const double expected = (1 - p.square().sum(1)).mean().item<double>();
      CHECK(expected > 0.05);
      CHECK(head_bias.sum().item<double>() == Approx(expected).epsilon(0.15));
    }
  }
}

TEST_CASE("the EWC penalty is lambda/2 sum F (w - w*)^2 and its gradient lambda F (w - w*)",
          "[continual][ewc]") {
  sculpt::cli::register_builtins();
  const auto cfg = Config::parse(
      "model: {name: mlp, hidden: [16, 12]}\n"
      "data: {name: synthetic_blobs, samples: 64, features: 8, classes: 3}\n"
      "compression: [{name: ewc, lambda: 3.0, samples: 20, include: ['hidden0.*', 'head.*'],\n"
      "  overrides: [{layers: 'head.*', lambda: 0.5}]}]\n");
  auto attached = sculpt::test::attach_first_pass(cfg);
  auto& model = attached.model();
  auto& pass = attached.pass();
  auto& ctx = attached.ctx;
  // The penalty's gradient is added to the gradients after backward; its value is reported.
  auto penalty_step = [&](sculpt::trainers::Callback& p, sculpt::models::Model& m,
                          const sculpt::trainers::StepContext& c) {
    for (auto& t : m.parameters()) t.mutable_grad() = torch::zeros_like(t);
    CHECK_FALSE(p.extra_loss(m, c).defined());  // nothing goes through the loss's graph
    p.after_backward(m, c);
    return p.summary()["penalty"];
  };
  CHECK(penalty_step(pass, model, ctx).is_null());  // nothing learned yet
  for (const auto& p : model.parameters()) CHECK(p.grad().abs().max().item<float>() == 0);
  pass.on_increment_end(model, attached.parts.split.train, ctx);
  const auto state = pass.state_dict();
  REQUIRE(state.meta["terms"] == 1);
  CHECK(penalty_step(pass, model, ctx).get<double>() == 0.0);  // at the anchor
  for (const auto& p : model.parameters()) CHECK(p.grad().abs().max().item<float>() == 0);

  torch::manual_seed(7);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model.parameters()) p.add_(torch::randn_like(p) * 0.1);
  }
  auto params = model.named_parameters();
  double hand = 0;
  std::map<std::string, at::Tensor> expected_grad;
  for (const auto& [key, f] : state.tensors) {
    if (key.rfind("0/fisher/", 0) != 0) continue;
    const std::string name = key.substr(9);
    at::Tensor anchor;
    for (const auto& [k2, t] : state.tensors)
      if (k2 == "0/anchor/" + name) anchor = t;
    // The model's parameter of this layer: <layer>.weight is <layer>.weight_raw or .weight.
    at::Tensor live;
    for (const auto& p : params)
      if (p.key() == name || p.key() == name + "_raw") live = p.value();
    REQUIRE(live.defined());
    const double lambda = name.rfind("head", 0) == 0 ? 0.5 : 3.0;
    auto diff = (live.detach() - anchor).to(torch::kDouble);
    hand += lambda / 2 * (f.to(torch::kDouble) * diff.pow(2)).sum().item<double>();
    expected_grad[name] = lambda * f.to(torch::kDouble) * diff;
  }
  REQUIRE(expected_grad.size() == 4);  // hidden0 and head, weight and bias
  CHECK(penalty_step(pass, model, ctx).get<double>() == Approx(hand).epsilon(1e-5));
  for (const auto& p : params)
    for (const auto& [name, g] : expected_grad)
      if (p.key() == name || p.key() == name + "_raw")
        CHECK(torch::allclose(p.value().grad().to(torch::kDouble), g, 1e-4, 1e-7));
  // A parameter without a gradient (dropped by `freeze`, or not reached) is left without one.
  at::Tensor protected_param;
  for (const auto& p : params)
    if (expected_grad.count(p.key()) || expected_grad.count(p.key().substr(0, p.key().size() - 4)))
      protected_param = p.value();
  REQUIRE(protected_param.defined());
  for (auto& p : model.parameters()) p.mutable_grad() = torch::zeros_like(p);
  protected_param.mutable_grad().reset();
  pass.after_backward(model, ctx);
  CHECK_FALSE(protected_param.grad().defined());
  CHECK(penalty_step(pass, model, ctx).get<double>() == Approx(hand).epsilon(1e-5));  // the others

  // Separate mode: one term per increment, folded into one for the step; the value is still
  // the sum of the terms.
  {
    const auto sep_cfg = Config::parse(
        "model: {name: mlp, hidden: [16, 12]}\n"
        "data: {name: synthetic_blobs, samples: 64, features: 8, classes: 3}\n"
        "compression: [{name: ewc, mode: separate, lambda: 2.0, samples: 20}]\n");
    auto sep = sculpt::test::attach_first_pass(sep_cfg);
    auto board = std::make_shared<sculpt::compression::FisherBoard>();
    dynamic_cast<sculpt::compression::FisherBoardUser&>(sep.pass()).set_fisher_board(board);
    sep.pass().on_increment_end(sep.model(), sep.parts.split.train, sep.ctx);
    {
      torch::NoGradGuard no_grad;
      for (auto& p : sep.model().parameters()) p.add_(torch::randn_like(p) * 0.1);
    }
    sep.pass().on_increment_end(sep.model(), sep.parts.split.train, sep.ctx);
    {
      torch::NoGradGuard no_grad;
      for (auto& p : sep.model().parameters()) p.add_(torch::randn_like(p) * 0.1);
    }
    const auto st = sep.pass().state_dict();
    REQUIRE(st.meta["terms"] == 2);
    double sum = 0;
    for (const auto& p : sep.model().named_parameters())
      for (int term = 0; term < 2; ++term) {
        at::Tensor f, a;
        for (const auto& [key, t] : st.tensors) {
          const std::string name = key.substr(key.find('/', 2) + 1);
          if (key.rfind(std::to_string(term) + "/fisher/", 0) == 0 && name == p.key()) f = t;
          if (key.rfind(std::to_string(term) + "/anchor/", 0) == 0 && name == p.key()) a = t;
        }
        if (!f.defined()) continue;
        sum += (f.to(torch::kDouble) * (p.value().detach().to(torch::kDouble) -
                                         a.to(torch::kDouble)).pow(2)).sum().item<double>();
      }
    CHECK(penalty_step(sep.pass(), sep.model(), sep.ctx).get<double>() ==
          Approx(sum).epsilon(1e-4));
    // The summed Fisher of the two terms is published for the prune pass's fisher scorer.
    for (const auto& p : sep.model().named_parameters()) {
      at::Tensor total;
      for (const auto& [key, t] : st.tensors)
        if (key.find("/fisher/") != std::string::npos && key.substr(key.find('/', 2) + 1) == p.key())
          total = total.defined() ? total + t : t.clone();
      if (!total.defined()) continue;
      const auto published = board->published(p.value());
      INFO(p.key());
      REQUIRE(published.defined());
      CHECK(torch::allclose(published.cpu(), total.to(published.scalar_type()), 1e-6, 1e-6));
    }
  }

  // Online mode: a second increment keeps one term (gamma F_old + F_new).
  pass.on_increment_end(model, attached.parts.split.train, ctx);
  CHECK(pass.state_dict().meta["terms"] == 1);
  CHECK(pass.summary()["increments"] == 2);
}

TEST_CASE("increments need the incremental trainer, and task_incremental needs classes",
          "[continual][config]") {
  sculpt::cli::register_builtins();
  const std::string base =
      "model: {name: mlp}\n"
      "data: {name: synthetic_blobs, samples: 64, features: 8, classes: 4}\n";
  CHECK_THROWS_WITH(Config::parse(base + "increments: [{classes: [0, 1]}]\n"),
                    Catch::Contains("increments need a trainer that trains on them"));
  CHECK_THROWS_WITH(Config::parse(base + "trainer: {name: incremental}\n"),
                    Catch::Contains("needs a list of increments"));
  CHECK_THROWS_WITH(Config::parse(base +
                                  "trainer: {name: incremental}\n"
                                  "incremental: {scenario: task_incremental}\n"
                                  "increments: [{permute_pixels: {seed: 1}}]\n"),
                    Catch::Contains("give `classes:` to increment 0"));
  CHECK_THROWS_WITH(Config::parse(base +
                                  "trainer: {name: incremental}\n"
                                  "increments: [{clases: [1]}]\n"),
                    Catch::Contains("did you mean 'classes'"));
  auto ok = Config::parse(base +
                          "trainer: {name: incremental}\n"
                          "incremental: {scenario: class_incremental}\n"
                          "increments: [{classes: [0, 1]}, {name: two, classes: [2, 3]}]\n");
  REQUIRE(ok.increments.size() == 2);
  CHECK(ok.increments[1].name == "two");
  CHECK(Config::parse(ok.dump()).dump() == ok.dump());
}

namespace {
using sculpt::compression::ReplayBuffer;
using sculpt::compression::ReplayPolicy;
// Offers `labels` in order (input = the stream position) to a buffer.
void stream(ReplayBuffer& buffer, const std::vector<int64_t>& labels, std::mt19937_64& rng,
            const std::vector<double>& scores = {}) {
  for (size_t i = 0; i < labels.size(); ++i)
    buffer.add(torch::tensor({static_cast<float>(buffer.seen())}), labels[i],
               scores.empty() ? 0.0 : scores[i], rng);
}
}  // namespace

TEST_CASE("reservoir replay keeps each seen sample with probability buffer/seen",
          "[continual][replay]") {
  const int64_t capacity = 10, n = 100, trials = 4000;
  std::mt19937_64 rng(42);
  std::vector<int64_t> kept(n, 0);
  for (int64_t t = 0; t < trials; ++t) {
    ReplayBuffer buffer(capacity, ReplayPolicy::reservoir);
    stream(buffer, std::vector<int64_t>(n, 0), rng);
    REQUIRE(buffer.size() == capacity);
    for (int64_t p : buffer.positions()) ++kept[p];
  }
  // Each position: Binomial(trials, capacity / n); 5 standard deviations of tolerance.
  const double p = static_cast<double>(capacity) / n, mean = trials * p;
  const double sd = std::sqrt(trials * p * (1 - p));
  double chi2 = 0;
  for (int64_t i = 0; i < n; ++i) {
    INFO("position " << i);
    CHECK(std::abs(kept[i] - mean) < 5 * sd);
    chi2 += (kept[i] - mean) * (kept[i] - mean) / mean;
  }
  // The first samples are not favoured over the last ones (and vice versa).
  int64_t first = 0, last = 0;
  for (int64_t i = 0; i < 20; ++i) first += kept[i], last += kept[n - 1 - i];
  CHECK(std::abs(first - last) < 5 * std::sqrt(2.0 * 20 * trials * p * (1 - p)));
  CHECK(chi2 < 2 * n);  // chi-square with n - 1 degrees of freedom: ~n
}

TEST_CASE("class-balanced replay keeps class counts within one of equal", "[continual][replay]") {
  std::mt19937_64 rng(7);
  std::vector<int64_t> labels;
  for (auto [cls, count] : {std::pair<int64_t, int64_t>{0, 500}, {1, 120}, {2, 60}, {3, 45}})
    for (int64_t i = 0; i < count; ++i) labels.push_back(cls);
  std::shuffle(labels.begin(), labels.end(), rng);
  for (int64_t capacity : {40, 41, 43, 100}) {
    ReplayBuffer buffer(capacity, ReplayPolicy::class_balanced);
    stream(buffer, labels, rng);
    const auto counts = buffer.class_counts();
    REQUIRE(counts.size() == 4);
    int64_t lo = capacity, hi = 0;
    for (const auto& [c, k] : counts) lo = std::min(lo, k), hi = std::max(hi, k);
    INFO("capacity " << capacity);
    CHECK(buffer.size() == capacity);
    CHECK(hi - lo <= 1);
  }
  // Classes arriving one after another (class-incremental): the same at the end of each.
  ReplayBuffer buffer(30, ReplayPolicy::class_balanced);
  for (int64_t cls = 0; cls < 5; ++cls) {
    stream(buffer, std::vector<int64_t>(200, cls), rng);
    int64_t lo = 30, hi = 0;
    for (const auto& [c, k] : buffer.class_counts()) lo = std::min(lo, k), hi = std::max(hi, k);
    CHECK(buffer.class_counts().size() == static_cast<size_t>(cls + 1));
    CHECK(hi - lo <= 1);
  }
  // A small class keeps all its samples; the others share the rest evenly.
  ReplayBuffer small(40, ReplayPolicy::class_balanced);
  std::vector<int64_t> few(300, 0);
  few.insert(few.end(), 300, 1);
  few.insert(few.end(), 4, 2);
  std::shuffle(few.begin(), few.end(), rng);
  stream(small, few, rng);
  const auto counts = small.class_counts();
  CHECK(counts.at(2) == 4);
  CHECK(std::abs(counts.at(0) - counts.at(1)) <= 1);
}

TEST_CASE("importance replay keeps the highest scores, and a buffer resumes exactly",
          "[continual][replay]") {
  std::mt19937_64 rng(3);
  std::vector<double> scores;
  for (int i = 0; i < 50; ++i) scores.push_back(static_cast<double>((i * 37) % 50));
  ReplayBuffer top(5, ReplayPolicy::importance);
  stream(top, std::vector<int64_t>(50, 1), rng, scores);
  std::vector<double> kept;
  for (int64_t p : top.positions()) kept.push_back(scores[p]);
  std::sort(kept.begin(), kept.end());
  CHECK(kept == std::vector<double>{45, 46, 47, 48, 49});

  // Save halfway, load into a new buffer, continue: the same as one uninterrupted stream.
  std::vector<int64_t> labels;
  for (int i = 0; i < 300; ++i) labels.push_back(i % 3);
  std::mt19937_64 r1(11), r2(11);
  ReplayBuffer whole(20, ReplayPolicy::class_balanced), first(20, ReplayPolicy::class_balanced);
  stream(whole, labels, r1);
  stream(first, {labels.begin(), labels.begin() + 150}, r2);
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  nlohmann::json meta;
  first.save(tensors, meta);
  ReplayBuffer second(20, ReplayPolicy::class_balanced);
  second.load(tensors, nlohmann::json::parse(meta.dump()));
  stream(second, {labels.begin() + 150, labels.end()}, r2);
  CHECK(second.positions() == whole.positions());
  CHECK(torch::equal(second.inputs(), whole.inputs()));
}

TEST_CASE("token rows are kept as int16 where their IDs fit, widened when a wider row arrives",
          "[continual][replay]") {
  std::mt19937_64 rng(5);
  ReplayBuffer buffer(10, ReplayPolicy::reservoir);
  const auto a = torch::tensor({3, 32767, 0, -1}, torch::kLong);
  const auto b = torch::tensor({1, 2, 1999, 4}, torch::kLong);
  buffer.add(a, 0, 0.0, rng);
  buffer.add(b, 1, 0.0, rng);
  CHECK(buffer.inputs().scalar_type() == torch::kShort);
  CHECK(buffer.bytes() == 2 * 4 * 2);  // two rows of four int16
  CHECK(torch::equal(buffer.inputs().to(torch::kLong), torch::stack({a, b})));
  // An ID past int16 widens every kept row to int32, values unchanged.
  const auto c = torch::tensor({40000, 5, 6, 7}, torch::kLong);
  buffer.add(c, 2, 0.0, rng);
  CHECK(buffer.inputs().scalar_type() == torch::kInt);
  CHECK(buffer.bytes() == 3 * 4 * 4);
  CHECK(torch::equal(buffer.inputs().to(torch::kLong), torch::stack({a, b, c})));
  // A narrow row after that is kept at the buffer's width; saved and loaded as it is.
  buffer.add(b, 1, 0.0, rng);
  CHECK(buffer.inputs().scalar_type() == torch::kInt);
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  nlohmann::json meta;
  buffer.save(tensors, meta);
  ReplayBuffer back(10, ReplayPolicy::reservoir);
  back.load(tensors, meta);
  CHECK(torch::equal(back.inputs(), buffer.inputs()));
  // Float rows (images) keep their type.
  ReplayBuffer images(2, ReplayPolicy::reservoir);
  images.add(torch::tensor({0.5f, 1.0f}), 0, 0.0, rng);
  CHECK(images.inputs().scalar_type() == torch::kFloat);
}
