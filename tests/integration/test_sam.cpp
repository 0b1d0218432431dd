// optimizer.sam_rho (trainers/sam.h): one SGD step of a real run equals SAM's formula computed
// here with ATen autograd, w - lr * grad L(w + rho g/||g||) (and ASAM's), on the same rows also
// under gradient accumulation (the step's micro-batches are reused, not read again), with a
// pass's extra loss in L; a short run with SAM learns; bad values are config errors.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <filesystem>
#include <map>
#include <string>

#include "cli/app.h"
#include "core/config/config.h"
#include "core/data/loader.h"
#include "core/io/safetensors.h"
#include "tests/support/process.h"
#include "trainers/run_parts.h"

using sculpt::test::run_process;

namespace {
const std::string kSculpt = SCULPT_BIN;

// 32 training rows (and 8 validation rows) of 3 blobs, read in order; one step of plain SGD.
// l2sp (alpha/2 ||W - W0||^2 over the two weight matrices, W0 = the init) is 0 with a zero
// gradient at the init, so only the gradient at w + e sees it.
const std::string kYaml =
    "run: {name: sam, device: cpu, seed: 3}\n"
    "model: {name: mlp, hidden: [8], activation: tanh}\n"
    "data: {name: synthetic_blobs, samples: 40, features: 4, classes: 3, spread: 1.5, "
    "val_fraction: 0.2, batch_size: 32, shuffle: false}\n"
    "optimizer: {name: sgd, lr: 0.5}\n"
    "trainer: {max_steps: 1, log_every: 1, final_train_eval: false}\n"
    "compression:\n  - {name: l2sp, alpha: 2.0}\n";
constexpr double kLr = 0.5, kAlpha = 2.0;

struct Expected {
  std::map<std::string, at::Tensor> weights;  // after the step
  double loss = 0;                            // the loss at the init (what the step logs)
};

// The step by hand: the same model, init and rows as the run, L = cross-entropy + l2sp.
// rho 0: plain SGD.
Expected expected_step(const std::string& init_file, double rho, bool adaptive) {
  auto cfg = sculpt::config::Config::parse(kYaml);
  cfg.model.init = init_file;
  auto parts = sculpt::trainers::build_run_parts(cfg, torch::kCPU);
  sculpt::data::Loader loader(parts.split.train, 32,
                              sculpt::data::LoaderOptions::for_training(cfg.data, 0));
  loader.start_epoch(0);
  sculpt::data::Batch b;
  REQUIRE(loader.next(b));
  REQUIRE(b.size() == 32);
  auto& model = *parts.model;
  std::vector<std::string> names;
  std::vector<at::Tensor> params, anchors;
  for (const auto& p : model.named_parameters()) {
    names.push_back(p.key());
    params.push_back(p.value());
    anchors.push_back(p.value().detach().clone());
  }
  auto loss_of = [&] {
    auto loss = parts.task->loss(model.forward(b.inputs), b.targets);
    for (size_t i = 0; i < params.size(); ++i)
      if (params[i].dim() == 2) loss = loss + (params[i] - anchors[i]).pow(2).sum() * (kAlpha / 2);
    return loss;
  };
  auto loss = loss_of();
  Expected out;
  out.loss = loss.item<double>();
  auto grads = torch::autograd::grad({loss}, params);
  if (rho > 0) {
    double sq = 0;
    for (size_t i = 0; i < params.size(); ++i)
      sq += (adaptive ? params[i].abs() * grads[i] : grads[i]).pow(2).sum().item<double>();
    {
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < params.size(); ++i) {
        auto scale = adaptive ? params[i].pow(2) : torch::ones_like(params[i]);
        params[i].add_(rho * scale * grads[i] / std::sqrt(sq));
      }
    }
    grads = torch::autograd::grad({loss_of()}, params);
  }
  for (size_t i = 0; i < params.size(); ++i) out.weights[names[i]] = anchors[i] - kLr * grads[i];
  return out;
}

// Runs one step of `sculpt train` from `init_file` with `overrides`; the weights it wrote.
std::map<std::string, at::Tensor> trained(const std::string& dir, const std::string& name,
                                          const std::string& init_file,
                                          const std::string& overrides, double* logged_loss) {
  const auto run =
      run_process(kSculpt + " train " + dir + "/sam.yaml model.init=" + init_file +
                  " run.output_dir=" + dir + "/" + name + " " + overrides + " --log-level warn");
  INFO(run.err);
  REQUIRE(run.exit_code == 0);
  if (logged_loss) {
    const auto losses = sculpt::test::train_losses(dir + "/" + name);
    REQUIRE(losses.count(1) == 1);
    *logged_loss = losses.at(1);
  }
  std::map<std::string, at::Tensor> out;
  for (auto& [k, t] : sculpt::io::load_safetensors(dir + "/" + name + "/model.safetensors"))
    out[k] = t;
  return out;
}

double max_diff(const std::map<std::string, at::Tensor>& got,
                const std::map<std::string, at::Tensor>& want) {
  double d = 0;
  for (const auto& [k, w] : want) {
    INFO(k);
    REQUIRE(got.count(k) == 1);
    d = std::max(d, (got.at(k) - w).abs().max().item<double>());
  }
  return d;
}

std::string setup(const std::string& tag) {
  sculpt::cli::register_builtins();
  const std::string dir = sculpt::test::temp_dir(tag);
  sculpt::test::write_text(dir + "/sam.yaml", kYaml);
  // The init both the runs and expected_step start from.
  auto parts = sculpt::trainers::build_run_parts(sculpt::config::Config::parse(kYaml), torch::kCPU);
  sculpt::io::save_safetensors(dir + "/init.safetensors", parts.model->state_tensors(), {});
  return dir;
}
}  // namespace

TEST_CASE("one SGD step with optimizer.sam_rho is w - lr * grad L(w + rho g/||g||)",
          "[trainer][optim][sam]") {
  const std::string dir = setup("sam_formula");
  const std::string init = dir + "/init.safetensors";
  const auto plain = expected_step(init, 0, false);
  const auto sam = expected_step(init, 0.3, false);
  const auto asam = expected_step(init, 0.3, true);
  // The formulas differ by far more than the tolerance, so a wrong step cannot pass.
  REQUIRE(max_diff(sam.weights, plain.weights) > 1e-2);
  REQUIRE(max_diff(asam.weights, sam.weights) > 1e-3);

  double logged = 0;
  SECTION("sam_rho 0 is the plain step (the oracle agrees with the trainer)") {
    CHECK(max_diff(trained(dir, "plain", init, "", &logged), plain.weights) < 1e-6);
  }
  SECTION("SAM; the logged loss is the loss at w, not at w + e") {
    CHECK(max_diff(trained(dir, "sam", init, "optimizer.sam_rho=0.3", &logged), sam.weights) <
          1e-6);
    CHECK(logged == Approx(sam.loss).epsilon(1e-6));
  }
  SECTION("SAM over 2 accumulated micro-batches of 16: the same rows at w + e") {
    CHECK(max_diff(trained(dir, "accum", init,
                           "optimizer.sam_rho=0.3 data.batch_size=16 trainer.grad_accumulation=2",
                           nullptr),
                   sam.weights) < 1e-6);
  }
  SECTION("SAM over the epoch's last, short accumulation (2 of 3 micro-batches): the mean") {
    CHECK(max_diff(trained(dir, "short", init,
                           "optimizer.sam_rho=0.3 data.batch_size=16 trainer.grad_accumulation=3",
                           nullptr),
                   sam.weights) < 1e-6);
  }
  SECTION("ASAM: e = rho w^2 g / ||w g||") {
    CHECK(max_diff(trained(dir, "asam", init, "optimizer.sam_rho=0.3 optimizer.sam_adaptive=true",
                           nullptr),
                   asam.weights) < 1e-6);
  }
}

TEST_CASE("a short run with optimizer.sam_rho learns", "[trainer][optim][sam]") {
  const std::string dir = sculpt::test::temp_dir("sam_run");
  const auto run = run_process(kSculpt + " train " + SCULPT_SOURCE_DIR +
                               "/configs/quickstart.yaml run.device=cpu data.samples=1200 "
                               "trainer.max_steps=60 trainer.log_every=1 scheduler.name=constant "
                               "trainer.final_train_eval=false optimizer.sam_rho=0.05 "
                               "run.output_dir=" +
                               dir + "/run --log-level warn");
  INFO(run.err);
  REQUIRE(run.exit_code == 0);
  const auto losses = sculpt::test::train_losses(dir + "/run");
  REQUIRE(losses.size() == 60);
  // ~2.30 (chance over 10 classes) in the first steps, ~1.7 in the last (also without SAM).
  double first = 0, last = 0;
  for (int64_t s = 1; s <= 5; ++s) first += losses.at(s) / 5;
  for (int64_t s = 56; s <= 60; ++s) last += losses.at(s) / 5;
  CHECK(last < 0.85 * first);
}

TEST_CASE("SAM under DDP: 2 ranks x 16 rows, 2 micro-batches, match 1 rank x 32 within 1e-5",
          "[trainer][optim][sam][multi_process]") {
  // Both backwards reduce over the ranks, and the second one syncs on the step's last kept
  // micro-batch: the perturbation, hence every loss, is the one process's.
  const std::string dir = sculpt::test::temp_dir("sam_ddp");
  sculpt::test::write_text(
      dir + "/d.yaml",
      "run: {name: d, device: cpu, seed: 3}\n"
      "model: {name: mlp, hidden: [16]}\n"
      "data: {name: synthetic_blobs, samples: 1024, features: 8, classes: 3, spread: 2}\n"
      "optimizer: {name: sgd, lr: 0.2, momentum: 0.9, sam_rho: 0.1}\n"
      "trainer: {max_steps: 8, log_every: 1, grad_accumulation: 2, final_train_eval: false}\n");
  const auto one = run_process("OMP_NUM_THREADS=1 " + kSculpt + " train " + dir +
                               "/d.yaml data.batch_size=32 run.output_dir=" + dir + "/one");
  INFO(one.err);
  REQUIRE(one.exit_code == 0);
  const auto two = sculpt::test::run_ranks(
      kSculpt + " train " + dir + "/d.yaml data.batch_size=16 run.output_dir=" + dir + "/two");
  for (int k = 0; k < 2; ++k) {
    INFO("rank " << k << ": " << two[k].err);
    REQUIRE(two[k].exit_code == 0);
  }
  const auto a = sculpt::test::train_losses(dir + "/one");
  const auto b = sculpt::test::train_losses(dir + "/two");
  REQUIRE(a.size() == 8);
  REQUIRE(b.size() == 8);
  for (const auto& [step, loss] : a) {
    INFO("step " << step);
    CHECK(std::abs(loss - b.at(step)) <= 1e-5);
  }
}

TEST_CASE("optimizer.sam_rho: a negative radius and a pipeline are config errors",
          "[trainer][optim][sam][config]") {
  sculpt::cli::register_builtins();
  const std::string dir = sculpt::test::temp_dir("sam_bad");
  std::string yaml = kYaml;
  yaml.replace(yaml.find("optimizer: {name: sgd, lr: 0.5}"), 31,
               "optimizer: {name: sgd, lr: 0.5, sam_rho: -0.1}");
  sculpt::test::write_text(dir + "/neg.yaml", yaml);
  const auto neg =
      run_process(kSculpt + " train " + dir + "/neg.yaml run.output_dir=" + dir + "/neg");
  CHECK(neg.exit_code == 2);
  CHECK_THAT(neg.err, Catch::Contains("neg.yaml:4:") && Catch::Contains("optimizer.sam_rho"));
  CHECK_FALSE(std::filesystem::exists(dir + "/neg"));

  const auto piped = run_process(kSculpt + " validate " + SCULPT_SOURCE_DIR +
                                 "/configs/pipeline_vit.yaml optimizer.sam_rho=0.05");
  CHECK(piped.exit_code == 2);
  CHECK_THAT(piped.err,
             Catch::Contains("optimizer.sam_rho") && Catch::Contains("distributed.pipeline"));
}
