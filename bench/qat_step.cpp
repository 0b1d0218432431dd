// bench_qat_step: QAT step time / FP32 step time (issue 6 target: <= 1.3 on CPU) on the small
// model where it is hardest, an MLP 784-64-10 at batch 64: one SGD step (forward, loss,
// backward, update) of a plain model and of the same model under the quantize pass (int8
// weights per channel, int8 inputs per tensor, observers on), in one process, alternated in
// short rounds so that a shared machine's load hits both alike. Every step gathers a fresh
// batch (index_select, as the loader does). Prints the median and the fastest round of each and
// their ratios, as a Markdown row: by wall time and by the process's CPU time (which a shared
// machine's other processes do not inflate by taking the core away).
//   OMP_NUM_THREADS=1 build/bin/bench_qat_step [steps per round, default 50] [rounds, default 40]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
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
double cpu_ms() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return 1e3 * static_cast<double>(t.tv_sec) + 1e-6 * static_cast<double>(t.tv_nsec);
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
  // A third argument, fp32 or qat, runs that kind alone (for a profiler): no table.
  const std::string only = argc > 3 ? argv[3] : "";
  if (!only.empty()) {
    for (int i = 0; i < steps * rounds; ++i) step(only == "qat");
    return 0;
  }
  for (int i = 0; i < 50; ++i) step(false), step(true);  // warm-up
  std::vector<double> fp32, q, fp32_cpu, q_cpu;
  for (int r = 0; r < rounds; ++r)
    for (bool quantized : {false, true}) {
      const auto t0 = Clock::now();
      const double c0 = cpu_ms();
      for (int i = 0; i < steps; ++i) step(quantized);
      (quantized ? q_cpu : fp32_cpu).push_back((cpu_ms() - c0) / steps);
      (quantized ? q : fp32).push_back(ms_since(t0) / steps);
      if (quantized && std::getenv("BENCH_ROUNDS"))  // every round's pair, to see the noise
        std::fprintf(stderr, "round %d: fp32 %.3f qat %.3f ms/step\n", r, fp32.back(), q.back());
    }
  std::printf("| clock | FP32 ms/step (median, fastest) | QAT ms/step (median, fastest) "
              "| QAT/FP32 medians | QAT/FP32 fastest |\n|---|---|---|---|---|\n");
  auto row = [](const char* clock, const std::vector<double>& p, const std::vector<double>& qv) {
    const double a = median(p), b = median(qv);
    const double fa = *std::min_element(p.begin(), p.end());
    const double fb = *std::min_element(qv.begin(), qv.end());
    std::printf("| %s | %.3f, %.3f | %.3f, %.3f | %.2f | %.2f |\n", clock, a, fa, b, fb, b / a,
                fb / fa);
  };
  row("wall", fp32, q);
  row("process CPU", fp32_cpu, q_cpu);
  return 0;
}
