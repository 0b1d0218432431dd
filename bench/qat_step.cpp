// bench_qat_step: QAT step time / FP32 step time (issue 6 target: <= 1.3 on CPU) on the small
// model where it is hardest, an MLP 784-64-10 at batch 64: one SGD step (forward, loss,
// backward, update) of a plain model and of the same model under the quantize pass (int8
// weights per channel, int8 inputs per tensor, observers on), in one process, alternated in
// short rounds so that a shared machine's load hits both alike. Every step gathers a fresh
// batch (index_select, as the loader does). Prints the median and the fastest round of each and
// their ratios, as a Markdown row.
//   OMP_NUM_THREADS=1 build/bin/bench_qat_step [steps per round, default 50] [rounds, default 40]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cli/app.h"
#include "compression/pass.h"
#include "core/config/config.h"
#include "core/data/loader.h"
#include "trainers/run_parts.h"

namespace {
using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::atoi(argv[1]) : 50, rounds = argc > 2 ? std::atoi(argv[2]) : 40;
  sculpt::cli::register_builtins();
  const std::string base =
      "run: {device: cpu, seed: 0}\n"
      "model: {name: mlp, hidden: [64]}\n"
      "data: {name: synthetic_blobs, samples: 8192, features: 784, classes: 10}\n";
  auto plain_cfg = sculpt::config::Config::parse(base);
  auto qat_cfg = sculpt::config::Config::parse(base + "compression: [{name: quantize}]\n");
  auto plain = sculpt::trainers::build_run_parts(plain_cfg, torch::kCPU);
  auto qat = sculpt::trainers::build_run_parts(qat_cfg, torch::kCPU);
  auto recipe = sculpt::compression::build_recipe(qat_cfg);
  auto& pass = *recipe[0];
  sculpt::trainers::StepContext ctx;
  ctx.total_steps = 1000000;  // a QAT run: observers on for the whole benchmark
  pass.attach(*qat.model, ctx);
  auto sgd_for = [](sculpt::models::Model& m) {
    return torch::optim::SGD(m.parameters(),
                             torch::optim::SGDOptions(0.05).momentum(0.9).weight_decay(1e-4));
  };
  auto sgd_plain = sgd_for(*plain.model), sgd_qat = sgd_for(*qat.model);
  const auto& inputs = plain.split.train.inputs();
  const auto& targets = plain.split.train.targets();
  const auto order = torch::randperm(inputs.size(0));
  int64_t next = 0;
  auto step = [&](bool quantized) {
    if (next + 64 > order.size(0)) next = 0;
    const auto idx = order.narrow(0, next, 64);
    next += 64;
    sculpt::data::Batch b;
    b.inputs = inputs.index_select(0, idx);
    b.targets = targets.index_select(0, idx);
    auto& model = quantized ? *qat.model : *plain.model;
    auto& sgd = quantized ? sgd_qat : sgd_plain;
    if (quantized) pass.on_batch(b, ctx);
    sgd.zero_grad();
    torch::nn::functional::cross_entropy(model.forward(b.inputs), b.targets).backward();
    sgd.step();
    if (quantized) {
      pass.after_step(model, ctx);
      ++ctx.step;
    }
  };
  for (int i = 0; i < 50; ++i) step(false), step(true);  // warm-up
  std::vector<double> fp32, q;
  for (int r = 0; r < rounds; ++r)
    for (bool quantized : {false, true}) {
      const auto t0 = Clock::now();
      for (int i = 0; i < steps; ++i) step(quantized);
      (quantized ? q : fp32).push_back(ms_since(t0) / steps);
    }
  const double a = median(fp32), b = median(q);
  const double fa = *std::min_element(fp32.begin(), fp32.end());
  const double fb = *std::min_element(q.begin(), q.end());
  std::printf("| FP32 ms/step (median, fastest) | QAT ms/step (median, fastest) | QAT/FP32 medians "
              "| QAT/FP32 fastest |\n|---|---|---|---|\n");
  std::printf("| %.3f, %.3f | %.3f, %.3f | %.2f | %.2f |\n", a, fa, b, fb, b / a, fb / fa);
  return 0;
}
