// bench_layers: the cost of Sculpt's compressible layers with no transforms attached, against
// the torch::nn layers they stand in for (same shapes, threads and inputs, one run). The target
// (issue 3) is "no extra cost": a ratio of 1.00 within noise. Prints a markdown table.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <vector>

#include "bench/bench_util.h"
#include "core/nn/layers.h"

namespace {
using sculpt::bench::time_us;
void row(const char* what, double sculpt_us, double torch_us) {
  std::printf("| %s | %.1f | %.1f | %.3f |\n", what, sculpt_us, torch_us, sculpt_us / torch_us);
}
}  // namespace

int main() {
  torch::manual_seed(0);
  std::printf(
      "threads: %d\n\n| layer, forward+backward | Sculpt (us) | torch::nn (us) | ratio "
      "|\n|---|---|---|---|\n",
      at::get_num_threads());
  {
    sculpt::nn::Linear ours(784, 256);
    torch::nn::Linear theirs(784, 256);
    auto x = torch::randn({64, 784});
    row("Linear 784->256, batch 64", time_us([&] { ours.forward(x).sum().backward(); }, 2000),
        time_us([&] { theirs->forward(x).sum().backward(); }, 2000));
  }
  {
    sculpt::nn::Conv2d ours(16, 32, 3, 1, 1);
    torch::nn::Conv2d theirs(torch::nn::Conv2dOptions(16, 32, 3).padding(1));
    auto x = torch::randn({32, 16, 16, 16});
    row("Conv2d 16->32 3x3, 32x16x16x16", time_us([&] { ours.forward(x).sum().backward(); }, 200),
        time_us([&] { theirs->forward(x).sum().backward(); }, 200));
  }
  {
    sculpt::nn::Embedding ours(10000, 128);
    torch::nn::Embedding theirs(10000, 128);
    auto idx = torch::randint(10000, {64, 32}, torch::kLong);
    row("Embedding 10000x128, 64x32 ids", time_us([&] { ours.forward(idx).sum().backward(); }, 500),
        time_us([&] { theirs->forward(idx).sum().backward(); }, 500));
  }
  return 0;
}
