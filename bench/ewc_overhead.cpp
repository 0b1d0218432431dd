// bench_ewc_overhead: the cost of the EWC penalty per training step (issue 8 target: <= 10%) on
// Permuted MNIST's model, an MLP 784-400-400-10 at batch 128: one SGD step (forward, loss,
// backward, update) without and with the ewc pass's penalty (its after_backward; Fisher estimated
// first), the two measured in alternation so that a shared machine's load hits both alike. Also
// the time of one Fisher estimate (on_increment_end, 200 per-sample gradients). Markdown table.
//   build/bin/bench_ewc_overhead [steps per round, default 20] [rounds, default 15]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cli/app.h"
#include "compression/pass.h"
#include "core/config/config.h"
#include "trainers/run_parts.h"

namespace {
using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}
}  // namespace

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::atoi(argv[1]) : 20, rounds = argc > 2 ? std::atoi(argv[2]) : 15;
  sculpt::cli::register_builtins();
  std::vector<std::pair<const char*, std::string>> modes = {
      {"online (1 term)", "{name: ewc, mode: online, lambda: 100, samples: 200}"},
      {"separate, 4 terms", "{name: ewc, mode: separate, lambda: 100, samples: 200}"}};
  std::printf("| ewc mode | step without (ms, median) | step with (ms, median) | overhead "
              "| the penalty alone (ms, median) | Fisher (s) |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (const auto& [label, item] : modes) {
    auto cfg = sculpt::config::Config::parse(
        "run: {device: cpu}\n"
        "model: {name: mlp, hidden: [400, 400]}\n"
        "data: {name: synthetic_blobs, samples: 4096, features: 784, classes: 10}\n"
        "compression: [" + item + "]\n");
    auto parts = sculpt::trainers::build_run_parts(cfg, torch::kCPU);
    auto& model = *parts.model;
    auto recipe = sculpt::compression::build_recipe(cfg);
    auto& pass = *recipe[0];
    sculpt::trainers::StepContext ctx;
    pass.attach(model, ctx);
    const int terms = std::string(label).find("4") != std::string::npos ? 4 : 1;
    auto t0 = Clock::now();
    for (int i = 0; i < terms; ++i) pass.on_increment_end(model, parts.split.train, ctx);
    const double fisher_s = ms_since(t0) / 1000 / terms;
    torch::optim::SGD sgd(model.parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
    auto x = parts.split.train.inputs().narrow(0, 0, 128), y = parts.split.train.targets().narrow(0, 0, 128);
    std::vector<double> penalty_ms;
    auto step = [&](bool penalty) {
      sgd.zero_grad();
      auto loss = torch::nn::functional::cross_entropy(model.forward(x), y);
      loss.backward();
      if (penalty) {  // the penalty's gradient, in one pass
        const auto p0 = Clock::now();
        pass.after_backward(model, ctx);
        penalty_ms.push_back(ms_since(p0));
      }
      sgd.step();
    };
    for (int i = 0; i < 5; ++i) step(false), step(true);  // warm-up
    std::vector<double> without, with;
    for (int r = 0; r < rounds; ++r)
      for (bool penalty : {false, true}) {
        t0 = Clock::now();
        for (int i = 0; i < steps; ++i) step(penalty);
        (penalty ? with : without).push_back(ms_since(t0) / steps);
      }
    std::sort(without.begin(), without.end());
    std::sort(with.begin(), with.end());
    const double a = without[without.size() / 2], b = with[with.size() / 2];
    std::sort(penalty_ms.begin(), penalty_ms.end());
    std::printf("| %s | %.2f | %.2f | %+.1f%% | %.3f | %.2f |\n", label, a, b, 100 * (b / a - 1),
                penalty_ms[penalty_ms.size() / 2], fisher_s);
  }
  return 0;
}
