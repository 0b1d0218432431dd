// The built-in passes in real (in-process) training: freeze leaves its layers bit-identical
// until unfreeze_at whatever momentum and weight decay do, l2sp keeps weights near where they
// started, and both pass the conformance suite every pass runs.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/app.h"
#include "compression/pass.h"
#include "core/config/config.h"
#include "core/models/model.h"
#include "core/nn/layers.h"
#include "tests/support/pass_conformance.h"
#include "tests/support/process.h"

using sculpt::config::Config;
using sculpt::test::ConformanceOptions;

namespace {

// After every step, which layers still hold exactly the weights (and biases) they started with.
class WeightWatcher final : public sculpt::trainers::Callback {
 public:
  std::string name() const override { return "watch"; }
  void attach(sculpt::models::Model& model, const sculpt::trainers::StepContext&) override {
    for (const auto& [n, l] : sculpt::nn::compressible_layers(model)) {
      std::vector<std::pair<at::Tensor, at::Tensor>> params;
      for (const auto& p : l->named_parameters(false))
        params.emplace_back(p.value(), p.value().detach().clone());
      layers_.emplace_back(n, std::move(params));
    }
  }
  void after_step(sculpt::models::Model&, const sculpt::trainers::StepContext&) override {
    for (const auto& [n, params] : layers_) {
      bool same = true;
      for (const auto& [now, start] : params) same = same && torch::equal(now, start);
      unchanged[n].push_back(same);
    }
  }
  std::map<std::string, std::vector<bool>> unchanged;  // layer -> per step

 private:
  std::vector<std::pair<std::string, std::vector<std::pair<at::Tensor, at::Tensor>>>> layers_;
};

// A pass whose loss term counts its calls, a count it does not save: a resumed run differs.
class ForgetfulPass final : public sculpt::compression::CompressionPass {
 public:
  using CompressionPass::CompressionPass;
  at::Tensor extra_loss(sculpt::models::Model&, const sculpt::trainers::StepContext&) override {
    return torch::tensor(0.01 * static_cast<double>(++calls_));
  }
  nlohmann::json summary() const override { return {{"calls", calls_}}; }

 private:
  int64_t calls_ = 0;
};

nlohmann::json pass_summary(const std::string& item, int64_t steps) {
  ConformanceOptions o;
  o.steps = o.resume_at = steps;
  const auto cfg = Config::parse(
      sculpt::test::tiny_run_yaml(sculpt::test::temp_dir("l2sp") + "/run", {item}, o));
  auto recipe = sculpt::compression::build_recipe(cfg);
  sculpt::test::train_in_process(cfg, recipe);
  return recipe[0]->summary();
}

}  // namespace

TEST_CASE("freeze keeps its layers bit-identical until unfreeze_at, then they train",
          "[passes][freeze]") {
  sculpt::cli::register_builtins();
  ConformanceOptions o;
  o.steps = o.resume_at = 6;
  const auto cfg = Config::parse(
      sculpt::test::tiny_run_yaml(sculpt::test::temp_dir("freeze") + "/run",
                                  {"{name: freeze, include: ['hidden0.*'], unfreeze_at: 3}"}, o));
  // tiny_run_yaml trains with SGD momentum and weight decay: both would move a weight that is
  // merely left without gradient.
  REQUIRE(cfg.optimizer.weight_decay > 0);
  auto recipe = sculpt::compression::build_recipe(cfg);
  auto watcher = std::make_shared<WeightWatcher>();
  recipe.push_back(watcher);
  REQUIRE(sculpt::test::train_in_process(cfg, recipe).steps == 6);
  using Steps = std::vector<bool>;
  CHECK(watcher->unchanged["hidden0.seq.0"] == Steps{true, true, true, false, false, false});
  CHECK(watcher->unchanged["hidden1.seq.0"] == Steps(6, false));
  CHECK(watcher->unchanged["head.seq.0"] == Steps(6, false));
  const auto summary = recipe[0]->summary();
  INFO(summary.dump());
  REQUIRE(summary["layers"].size() == 1);
  CHECK(summary["layers"][0]["name"] == "hidden0.seq.0");
  CHECK(summary["layers"][0]["steps_frozen"] == 3);
  CHECK(summary["layers"][0]["unfrozen"] == true);
}

TEST_CASE("l2sp with a large alpha keeps the weights closer to where they started",
          "[passes][l2sp]") {
  sculpt::cli::register_builtins();
  const auto free = pass_summary("{name: l2sp, alpha: 0}", 30);
  const auto pulled = pass_summary("{name: l2sp, alpha: 5}", 30);
  INFO(free.dump() << "\n" << pulled.dump());
  REQUIRE(free["layers"].size() == 3);
  REQUIRE(pulled["layers"].size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    const double moved_free = free["layers"][i]["relative_distance"].get<double>();
    const double moved_pulled = pulled["layers"][i]["relative_distance"].get<double>();
    CHECK(moved_free > 0);
    CHECK(moved_pulled < 0.5 * moved_free);
  }
}

TEST_CASE("freeze passes the pass conformance suite", "[passes][conformance][freeze]") {
  sculpt::test::run_pass_conformance("{name: freeze, include: ['hidden0.*'], unfreeze_at: 5}");
}

TEST_CASE("l2sp passes the pass conformance suite", "[passes][conformance][l2sp]") {
  sculpt::test::run_pass_conformance(
      "{name: l2sp, alpha: 0.1, include_bias: true, exclude: ['head.*'], "
      "overrides: [{layers: 'hidden1.*', alpha: 1.0}]}");
}

// Run by the next test in a child process, where its failures are the expected outcome.
TEST_CASE("a pass that forgets its state fails the conformance suite", "[.][forgetful]") {
  sculpt::cli::register_builtins();
  auto& passes = sculpt::compression::pass_registry();
  if (!passes.contains("test_forgetful"))  // the suite's sections rerun this body
    passes.add(
        "test_forgetful", "test: a loss term from a count it does not save",
        [](const sculpt::config::PassConfig& c) { return std::make_unique<ForgetfulPass>(c); });
  sculpt::test::run_pass_conformance("{name: test_forgetful}");
}

TEST_CASE("the conformance suite catches a pass whose resume does not continue exactly",
          "[passes][conformance]") {
  const auto self = std::filesystem::read_symlink("/proc/self/exe").string();
  auto r = sculpt::test::run_process(self + " '[forgetful]'");
  INFO(r.out);
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.out, Catch::Contains("loss == losses.at(step)"));
  CHECK_THAT(r.out, Catch::Contains("resumed_pass->summary() == summary"));
}
