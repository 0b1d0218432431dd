// bench_loader: what background prefetch buys. CIFAR-sized random images [N, 3, 32, 32] with
// random crop (padding 4), horizontal flip and normalization, batch 128; a consumer that
// "computes" for a fixed time per batch, either sleeping (the CPU is free, as while a GPU step
// runs) or multiplying matrices (the step competes with the worker for the CPU cores). Prints
// the median wall time per epoch with prefetch 0 (batches made in next()) and prefetch 2.
// Usage: bench_loader [intra-op threads of the consumer; default: ATen's]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <thread>
#include <vector>

#include "core/data/loader.h"

namespace {
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Median over `reps` epochs of the wall time of one epoch, consuming every batch with `step`.
double epoch_ms(const sculpt::data::Dataset& data, int64_t prefetch,
                const std::function<void(const sculpt::data::Batch&)>& step, int reps = 5) {
  sculpt::data::LoaderOptions o;
  o.shuffle = true;
  o.crop_padding = 4;
  o.hflip = true;
  o.normalize_mean = {0.49, 0.48, 0.45};
  o.normalize_std = {0.25, 0.24, 0.26};
  o.prefetch = prefetch;
  sculpt::data::Loader loader(data, 128, o);
  std::vector<double> runs;
  for (int e = 0; e <= reps; ++e) {  // epoch 0 warms up
    auto t0 = Clock::now();
    loader.start_epoch(e);
    sculpt::data::Batch b;
    while (loader.next(b)) step(b);
    if (e > 0) runs.push_back(ms_since(t0));
  }
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) at::set_num_threads(std::atoi(argv[1]));  // intra-op threads of the consumer
  const int64_t n = 10000;
  sculpt::data::DataSpec spec;
  spec.input_shape = {3, 32, 32};
  spec.num_classes = 10;
  sculpt::data::Dataset data(torch::rand({n, 3, 32, 32}), torch::randint(10, {n}, torch::kLong),
                             spec);
  const int64_t batches = (n + 127) / 128;

  // The data cost alone, to size the simulated step like it.
  const double data_ms = epoch_ms(data, 0, [](const sculpt::data::Batch&) {}) / batches;
  const auto step_ms = std::max(1.0, data_ms);
  const auto sleep = [&](const sculpt::data::Batch&) {
    std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(step_ms));
  };
  auto a = torch::randn({192, 192}), w = torch::randn({192, 192});
  std::vector<double> one;  // calibration: as many 192x192 matmuls as take step_ms
  for (int i = 0; i < 50; ++i) {
    auto t0 = Clock::now();
    a = torch::tanh(a.mm(w));
    one.push_back(ms_since(t0));
  }
  std::sort(one.begin(), one.end());
  const int matmuls = std::max(1, static_cast<int>(step_ms / one[one.size() / 2]));
  const auto compute = [&](const sculpt::data::Batch&) {
    for (int i = 0; i < matmuls; ++i) a = torch::tanh(a.mm(w));
  };

  std::printf(
      "threads: %d; %lld images [3, 32, 32], batch 128 (%lld batches per epoch), crop "
      "padding 4 + hflip + normalize; making one batch alone: %.2f ms\n\n",
      at::get_num_threads(), static_cast<long long>(n), static_cast<long long>(batches), data_ms);
  std::printf(
      "| consumer, per batch | prefetch 0 (ms/epoch) | prefetch 2 (ms/epoch) | speed-up |\n"
      "|---|---|---|---|\n");
  auto row = [&](const char* what, const std::function<void(const sculpt::data::Batch&)>& step) {
    const double p0 = epoch_ms(data, 0, step), p2 = epoch_ms(data, 2, step);
    std::printf("| %s | %.1f | %.1f | %.2fx |\n", what, p0, p2, p0 / p2);
  };
  char label[96];
  row("nothing (the data cost alone)", [](const sculpt::data::Batch&) {});
  std::snprintf(label, sizeof label, "sleep %.2f ms (CPU free, like a GPU step)", step_ms);
  row(label, sleep);
  std::snprintf(label, sizeof label, "%d matmul(s) 192x192 (about %.2f ms of CPU)", matmuls,
                step_ms);
  row(label, compute);
  return 0;
}
