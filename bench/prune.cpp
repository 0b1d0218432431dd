// Pruning speed on CPU (issue 7): (1) the block-sparse (BSR) Linear of a pruned MLP's big layers
// at 90% block sparsity against the dense layer, per layer and for the whole MLP forward;
// (2) LeNet-5 with 50% of its conv channels (and fc1 neurons) pruned and physically removed
// against the dense LeNet-5. Median of repeated timed runs; prints markdown tables.
//   build/bin/bench_prune [threads]      (default 1)
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#include "cli/app.h"
#include "compression/pass.h"
#include "compression/passes/prune/bsr.h"
#include "compression/passes/prune/prune_core.h"
#include "core/config/config.h"
#include "core/logging/logging.h"
#include "core/models/model.h"
#include "core/nn/layers.h"

namespace prune = sculpt::compression::prune;

namespace {

// Median ms of f and of g, timed alternately (f, g, f, g, ...) so that a load change on the
// shared machine hits both alike.
std::pair<double, double> compare_ms(const std::function<void()>& f, const std::function<void()>& g,
                                     int reps) {
  for (int i = 0; i < 3; ++i) f(), g();  // warm up
  std::vector<double> tf, tg;
  auto time = [](const std::function<void()>& h) {
    const auto t0 = std::chrono::steady_clock::now();
    h();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  for (int i = 0; i < reps; ++i) {
    tf.push_back(time(f));
    tg.push_back(time(g));
  }
  std::sort(tf.begin(), tf.end());
  std::sort(tg.begin(), tg.end());
  return {tf[tf.size() / 2], tg[tg.size() / 2]};
}

// A random weight with `density` of its b x b blocks kept.
at::Tensor block_sparse(int64_t out, int64_t in, int64_t b, double density) {
  auto keep = torch::rand({out / b, in / b}) < density;
  prune::Pattern p{prune::PatternKind::block, 2, 4, b};
  return torch::randn({out, in}) * 0.05 * prune::expand_mask(keep, out, in, p);
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  at::set_num_threads(threads);
  torch::manual_seed(0);
  torch::NoGradGuard no_grad;
  sculpt::cli::register_builtins();
  sculpt::log::set_level(sculpt::log::Level::warn);

  // (1) MLP 784-2048-2048-10, the two big layers at 90% block sparsity.
  std::printf("## BSR Linear vs dense, 90%% block sparsity, %d thread(s)\n\n", threads);
  std::printf("| layer | block | batch | dense (ms) | BSR (ms) | speedup |\n|---|---|---|---|---|---|\n");
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{2048, 784}, {2048, 2048}};
  for (int64_t b : {8, 16}) {
    for (int64_t batch : {64, 256}) {
      std::vector<at::Tensor> ws;
      std::vector<prune::Bsr> ms;
      std::vector<at::Tensor> biases;
      for (auto [out, in] : shapes) {
        ws.push_back(block_sparse(out, in, b, 0.1));
        ms.push_back(prune::to_bsr(ws.back(), b));
        biases.push_back(torch::randn({out}));
      }
      double dense_total = 0, sparse_total = 0;
      for (size_t i = 0; i < shapes.size(); ++i) {
        auto x = torch::randn({batch, shapes[i].second});
        const auto [d, s] = compare_ms([&] { torch::linear(x, ws[i], biases[i]); },
                                       [&] { prune::bsr_linear(x, ms[i], biases[i]); }, 30);
        dense_total += d;
        sparse_total += s;
        std::printf("| %lldx%lld | %lld | %lld | %.3f | %.3f | %.2fx |\n",
                    static_cast<long long>(shapes[i].first),
                    static_cast<long long>(shapes[i].second), static_cast<long long>(b),
                    static_cast<long long>(batch), d, s, d / s);
      }
      // The whole MLP forward: big layers + relu + the dense 2048x10 head.
      auto head = torch::randn({10, 2048});
      auto x = torch::randn({batch, 784});
      const auto [d, s] = compare_ms(
          [&] {
            auto h = torch::relu(torch::linear(x, ws[0], biases[0]));
            h = torch::relu(torch::linear(h, ws[1], biases[1]));
            torch::linear(h, head);
          },
          [&] {
            auto h = torch::relu(prune::bsr_linear(x, ms[0], biases[0]));
            h = torch::relu(prune::bsr_linear(h, ms[1], biases[1]));
            torch::linear(h, head);
          },
          30);
      std::printf("| whole MLP 784-2048-2048-10 | %lld | %lld | %.3f | %.3f | %.2fx |\n",
                  static_cast<long long>(b), static_cast<long long>(batch), d, s, d / s);
    }
  }
  // Where BSR stops paying: one 2048x2048 layer, b = 16, batch 256, by block density.
  std::printf("\n| 2048x2048, b 16, batch 256: block density | dense (ms) | BSR (ms) | speedup |\n"
              "|---|---|---|---|\n");
  for (double density : {0.05, 0.1, 0.2, 0.3, 0.5}) {
    auto w = block_sparse(2048, 2048, 16, density);
    auto m = prune::to_bsr(w, 16);
    auto x = torch::randn({256, 2048});
    const auto [d, s] =
        compare_ms([&] { torch::linear(x, w); }, [&] { prune::bsr_linear(x, m, {}); }, 20);
    std::printf("| %.2f | %.3f | %.3f | %.2fx |\n", m.density(), d, s, d / s);
  }

  // (2) LeNet-5: 50% of the conv filters removed (configs/mnist_prune_channels.yaml), and the same
  // with half of fc1's neurons too.
  sculpt::data::DataSpec spec;
  spec.input_shape = {1, 28, 28};
  spec.num_classes = 10;
  for (const char* include : {"'conv.*'", "'conv.*', 'fc1.*'"}) {
    const auto cfg = sculpt::config::Config::parse(
        std::string("model: {name: lenet5}\ndata: {name: synthetic_blobs}\n"
                    "compression: [{name: prune, pattern: channel, schedule: one_shot, "
                    "sparsity: 0.5, include: [") +
        include + "]}]\n");
    auto dense = sculpt::models::model_registry().create("lenet5", cfg.model, spec);
    auto pruned = sculpt::models::model_registry().create("lenet5", cfg.model, spec);
    dense->eval();
    pruned->eval();
    auto recipe = sculpt::compression::build_recipe(cfg);
    sculpt::trainers::StepContext ctx;
    ctx.total_steps = 1;
    recipe[0]->attach(*pruned, ctx);
    recipe[0]->finalize(*pruned, ctx);
    std::printf("\n## LeNet-5, half of the channels of [%s] removed, %d thread(s)\n\n"
                "params: dense %lld, pruned %lld\n\n| batch | dense (ms) | pruned (ms) | speedup |\n"
                "|---|---|---|---|\n",
                include, threads, static_cast<long long>(dense->parameter_count()),
                static_cast<long long>(pruned->parameter_count()));
    for (int64_t batch : {1, 64, 256}) {
      auto x = torch::randn({batch, 1, 28, 28});
      const auto [d, p] =
          compare_ms([&] { dense->forward(x); }, [&] { pruned->forward(x); }, 50);
      std::printf("| %lld | %.3f | %.3f | %.2fx |\n", static_cast<long long>(batch), d, p, d / p);
    }
  }
  return 0;
}
