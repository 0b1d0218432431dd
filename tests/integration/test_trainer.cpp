// Trainer options end to end: gradient accumulation equals the large batch, the NaN policy
// (abort with the step and the values, or skip and count), early stopping, and weight decay
// exempting biases and norms.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/app.h"
#include "core/config/config.h"
#include "core/optim/optimizers.h"
#include "trainers/run_parts.h"
#include "tests/support/process.h"

using sculpt::test::run_process;

namespace {
const std::string kSculpt = SCULPT_BIN;

nlohmann::json summary(const std::string& dir) {
  std::ifstream in(dir + "/summary.json");
  std::stringstream s;
  s << in.rdbuf();
  return nlohmann::json::parse(s.str());
}

std::string base(const std::string& dir) {
  std::string path = dir + "/t.yaml";
  sculpt::test::write_text(
      path,
      "run: {name: t, device: cpu, seed: 1}\n"
      "model: {name: mlp, hidden: [32]}\n"
      "data: {name: synthetic_blobs, samples: 1024, classes: 4, spread: 3, shuffle: true}\n"
      "optimizer: {name: sgd, lr: 0.05, momentum: 0.9}\n"
      "trainer: {epochs: 2, log_every: 1}\n");
  return path;
}
}  // namespace

TEST_CASE("gradient accumulation of 2 x 32 equals one batch of 64", "[trainer]") {
  std::string dir = sculpt::test::temp_dir("accum");
  std::string cfg = base(dir);
  REQUIRE(run_process(kSculpt + " train " + cfg + " data.batch_size=64 run.output_dir=" + dir +
                      "/a --log-level warn")
              .exit_code == 0);
  REQUIRE(run_process(kSculpt + " train " + cfg +
                      " data.batch_size=32 trainer.grad_accumulation=2 run.output_dir=" + dir +
                      "/b --log-level warn")
              .exit_code == 0);
  auto a = summary(dir + "/a"), b = summary(dir + "/b");
  CHECK(a["steps"] == b["steps"]);
  CHECK(b["final"]["train"]["loss"].get<double>() ==
        Approx(a["final"]["train"]["loss"].get<double>()).epsilon(1e-4));
}

TEST_CASE("a NaN loss aborts with the step and the values, or is skipped and counted",
          "[trainer]") {
  std::string dir = sculpt::test::temp_dir("nan");
  std::string cfg = base(dir);
  auto abort = run_process(kSculpt + " train " + cfg +
                           " optimizer.lr=1e30 optimizer.momentum=0 run.output_dir=" + dir + "/a");
  CHECK(abort.exit_code == 1);
  CHECK_THAT(abort.err, Catch::Contains("training diverged: loss "));
  CHECK_THAT(abort.err, Catch::Contains(" at step "));
  CHECK_THAT(abort.err, Catch::Contains("model outputs"));
  auto skip = run_process(
      kSculpt + " train " + cfg +
      " optimizer.lr=1e30 optimizer.momentum=0 trainer.nonfinite=skip run.output_dir=" + dir +
      "/b --log-level error");
  CHECK(skip.exit_code == 0);
  CHECK(summary(dir + "/b")["skipped_steps"].get<int64_t>() > 0);
}

TEST_CASE("early stopping ends the run after N evaluations without a better metric", "[trainer]") {
  std::string dir = sculpt::test::temp_dir("early");
  std::string cfg = base(dir);
  auto r = run_process(kSculpt + " train " + cfg +
                       " optimizer.lr=1e-12 trainer.eval_every=1 "
                       "trainer.early_stopping=2 trainer.epochs=5 run.output_dir=" +
                       dir + "/a");
  REQUIRE(r.exit_code == 0);
  auto s = summary(dir + "/a");
  CHECK(s["early_stopped"] == true);
  CHECK(s["steps"] == 3);  // best at step 1, no better at 2 and 3
  CHECK_THAT(r.err, Catch::Contains("early stopping at step 3"));
}

TEST_CASE("weight decay skips biases and norm parameters by default", "[trainer][optim]") {
  sculpt::cli::register_builtins();
  auto cfg = sculpt::config::Config::parse(
      "model: {name: mlp}\ndata: {name: synthetic_blobs}\noptimizer: {name: adamw, weight_decay: "
      "0.1}\n");
  torch::nn::Linear lin(3, 2);
  std::vector<std::pair<std::string, at::Tensor>> named;
  for (const auto& p : lin->named_parameters()) named.emplace_back(p.key(), p.value());
  auto opt = sculpt::optimizer_registry().create(
      "adamw", sculpt::split_for_weight_decay(named, cfg.optimizer.no_decay_bias_norm),
      cfg.optimizer);
  REQUIRE(opt->param_groups().size() == 2);
  auto wd = [](const torch::optim::OptimizerParamGroup& g) {
    return static_cast<const torch::optim::AdamWOptions&>(g.options()).weight_decay();
  };
  CHECK(wd(opt->param_groups()[0]) == 0.1);
  CHECK(opt->param_groups()[0].params()[0].dim() == 2);
  CHECK(wd(opt->param_groups()[1]) == 0.0);
  CHECK(opt->param_groups()[1].params()[0].dim() == 1);
  auto all = sculpt::split_for_weight_decay(named, false);
  CHECK(all.no_decay.empty());
  CHECK(all.decay.size() == 2);
}

TEST_CASE("trainer.precision=bf16 runs forward passes under bf16 autocast, on CPU too",
          "[trainer]") {
  {
    auto a = torch::randn({4, 8}), b = torch::randn({8, 3});
    sculpt::trainers::Autocast autocast(torch::kCPU, true);
    CHECK(torch::mm(a, b).scalar_type() == torch::kBFloat16);
  }
  CHECK(torch::mm(torch::randn({4, 8}), torch::randn({8, 3})).scalar_type() == torch::kFloat);
  CHECK(sculpt::trainers::use_bf16(sculpt::config::Precision::automatic, torch::Device("cuda:0")));
  CHECK_FALSE(sculpt::trainers::use_bf16(sculpt::config::Precision::automatic, torch::kCPU));

  std::string dir = sculpt::test::temp_dir("bf16");
  std::string cfg = base(dir);
  auto fp32 = run_process(kSculpt + " train " + cfg + " run.output_dir=" + dir + "/a");
  auto bf16 = run_process(kSculpt + " train " + cfg + " trainer.precision=bf16 run.output_dir=" +
                          dir + "/b");
  REQUIRE(fp32.exit_code == 0);
  REQUIRE(bf16.exit_code == 0);
  CHECK((bf16.out + bf16.err).find("(bf16 autocast)") != std::string::npos);
  CHECK((fp32.out + fp32.err).find("(bf16 autocast)") == std::string::npos);
  const double acc_a = summary(dir + "/a")["final"]["val"]["accuracy"].get<double>();
  const double acc_b = summary(dir + "/b")["final"]["val"]["accuracy"].get<double>();
  CHECK(acc_b > 0.9);
  // bf16 rounding makes the runs differ, but only a little.
  CHECK(summary(dir + "/b")["final"]["train"]["loss"].get<double>() !=
        summary(dir + "/a")["final"]["train"]["loss"].get<double>());
  CHECK(std::abs(acc_a - acc_b) < 0.05);
}
