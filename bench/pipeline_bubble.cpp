// Pipeline bubble and activation memory (issue 10): p stages as threads over in-memory queues,
// each stage's forward and backward taking a fixed time, so the measured idle fraction per
// stage is the schedule's own (what a pipeline loses whatever its hardware), against the
// theory (p - 1) / (m + p - 1). Stage work sleeps rather than computes so that p stages on a
// 2-core machine do not compete for cores; the transport, the autograd bookkeeping and the
// schedule are the real ones.
//
//   build/bin/bench_pipeline_bubble [stages=4] [forward_ms=4]
//
// The backward takes twice the forward, as for a linear layer.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "distributed/pipeline.h"

namespace pp = sculpt::distributed::pipeline;

namespace {
int g_forward_us = 4000;

void spend(int us) { std::this_thread::sleep_for(std::chrono::microseconds(us)); }

// y = x * 1, whose forward sleeps forward_us and backward sleeps 2 * forward_us.
struct TimedStage : torch::autograd::Function<TimedStage> {
  static at::Tensor forward(torch::autograd::AutogradContext*, const at::Tensor& x) {
    spend(g_forward_us);
    return x.clone();
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                 torch::autograd::variable_list g) {
    spend(2 * g_forward_us);
    return {g[0]};
  }
};

struct Result {
  std::vector<double> bubble;  // per stage
  std::vector<int64_t> peak;   // per stage
};

Result run(pp::Schedule kind, int64_t p, int64_t m, int steps) {
  const int64_t rows = m * 4;
  auto w = torch::ones({1, 8}, torch::requires_grad());
  auto rows_per = pp::microbatch_rows(rows, m);
  std::vector<at::Tensor> xs, ys;
  for (auto r : rows_per) xs.push_back(torch::randn({r, 8})), ys.push_back(torch::randn({r, 8}));
  Result res{std::vector<double>(p, 0.0), std::vector<int64_t>(p, 0)};
  for (int step = 0; step < steps; ++step) {
    pp::LocalHub hub(p);
    std::vector<pp::StepStats> st(p);
    std::vector<std::thread> th;
    for (int64_t s = 0; s < p; ++s)
      th.emplace_back([&, s] {
        auto tr = hub.endpoint(s);
        pp::StageFunctions f;
        f.forward = [&](const at::Tensor& x) { return TimedStage::apply(s == 0 ? x * w : x); };
        f.loss = [](const at::Tensor& y, const at::Tensor& t) { return (y - t).pow(2).mean(); };
        st[s] = pp::run_step(kind, s, p, rows_per, s == 0 ? xs : std::vector<at::Tensor>{},
                             s == p - 1 ? ys : std::vector<at::Tensor>{}, f, *tr);
      });
    for (auto& t : th) t.join();
    if (step == 0) continue;  // warm-up
    // The step ends for everyone when the slowest stage ends (the optimizer step waits for
    // every gradient), so each stage's idle time is measured over that common window.
    double window = 0;
    for (const auto& x : st) window = std::max(window, x.total_seconds);
    for (int64_t s = 0; s < p; ++s) {
      res.bubble[s] += (1.0 - st[s].busy_seconds / window) / (steps - 1);
      res.peak[s] = st[s].peak_live;
    }
  }
  return res;
}
}  // namespace

int main(int argc, char** argv) {
  const int64_t p = argc > 1 ? std::atoll(argv[1]) : 4;
  if (argc > 2) g_forward_us = static_cast<int>(std::atof(argv[2]) * 1000);
  double load[3] = {0, 0, 0};
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1;
    std::fclose(f);
  }
  std::printf("pipeline bubble: %lld stages, forward %.1f ms, backward %.1f ms per stage and "
              "micro-batch (load average %.2f)\n\n",
              static_cast<long long>(p), g_forward_us / 1000.0, 2 * g_forward_us / 1000.0, load[0]);
  std::printf("| schedule | m | theory (p-1)/(m+p-1) | measured bubble, per stage | worst gap (pp) "
              "| peak live micro-batches, per stage |\n|---|---|---|---|---|---|\n");
  double worst_gap = 0;
  int64_t peak8[2] = {0, 0};  // stage 0 at m = 8: gpipe, 1f1b
  for (auto kind : {pp::Schedule::gpipe, pp::Schedule::one_f_one_b})
    for (int64_t m : {1, 2, 4, 8, 16}) {
      auto r = run(kind, p, m, 4);
      const double th = pp::theoretical_bubble(p, m);
      std::string b, pk;
      double gap = 0;
      for (int64_t s = 0; s < p; ++s) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%s%.3f", s ? " / " : "", r.bubble[s]);
        b += buf;
        pk += (s ? " / " : "") + std::to_string(r.peak[s]);
        gap = std::max(gap, std::abs(r.bubble[s] - th) * 100);
      }
      worst_gap = std::max(worst_gap, gap);
      if (m == 8) peak8[kind == pp::Schedule::gpipe ? 0 : 1] = r.peak[0];
      std::printf("| %s | %lld | %.3f | %s | %.1f | %s |\n", pp::schedule_name(kind),
                  static_cast<long long>(m), th, b.c_str(), gap, pk.c_str());
    }
  std::printf("\nworst gap to theory: %.1f percentage points (target <= 5)\n", worst_gap);
  std::printf("activations at m = 8, stage 0 (the most loaded): 1F1B held %lld micro-batches, "
              "GPipe %lld (ratio %.3f; target <= p/m = %.3f)\n",
              static_cast<long long>(peak8[1]), static_cast<long long>(peak8[0]),
              static_cast<double>(peak8[1]) / static_cast<double>(peak8[0]), p / 8.0);
  return 0;
}
