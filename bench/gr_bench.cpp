// bench_gr: one row of the generative-retrieval results table for a finished run of a
// configs/gr/ step: parameters (and how many are nonzero after pruning), bytes of the weights
// (FP32 file, or the int8 export with --quantized), CPU latency per query of beam search
// constrained to valid IDs (beam 10, the task's decoder) at batch 1 and batch 64, and Hits@1,
// Hits@10, MRR@10 on the run's test queries. Same process, same threads for every row.
//   build/bin/bench_gr LABEL CONFIG [--quantized] [key=value ...]
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "cli/app.h"
#include "compression/passes/quantize/int8_model.h"
#include "core/config/config.h"
#include "core/error.h"
#include "core/io/safetensors.h"
#include "core/run/run_context.h"
#include "core/tasks/decoding.h"
#include "trainers/run_parts.h"

int main(int argc, char** argv) {
  using namespace sculpt;
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench_gr LABEL CONFIG [--quantized] [key=value ...]\n");
    return 2;
  }
  cli::register_builtins();
  const std::string label = argv[1];
  bool quantized = false;
  std::vector<std::string> overrides;
  for (int i = 3; i < argc; ++i) {
    if (std::string(argv[i]) == "--quantized")
      quantized = true;
    else
      overrides.emplace_back(argv[i]);
  }
  try {
    const auto cfg = config::Config::load(argv[2], overrides);
    const auto dir = RunContext::dir_for(cfg);
    const c10::Device cpu(c10::kCPU);
    auto parts = trainers::build_run_parts(cfg, cpu);
    auto& model = *parts.model;
    int64_t bytes = 0;
    if (quantized) {
      // The run's float weights first (their pruned zeros are the export's): the nonzero count
      // below is then the export's, not model.init's.
      model.load_state_tensors(io::load_safetensors((dir / "model.safetensors").string()),
                               (dir / "model.safetensors").string());
      const auto manifest = quant::load_quantized(model, (dir / "quantized").string());
      bytes = manifest.at("bytes").get<int64_t>();
    } else {
      model.load_state_tensors(io::load_safetensors((dir / "model.safetensors").string()),
                               (dir / "model.safetensors").string());
      bytes = model.parameter_bytes();
    }
    model.eval();
    torch::NoGradGuard no_grad;
    int64_t params = 0, nonzero = 0;
    for (const auto& p : model.parameters()) {
      params += p.numel();
      nonzero += p.ne(0).sum().item<int64_t>();
    }
    SCULPT_CHECK(parts.test, argv[2], ": the dataset has no test part");
    const auto& test = *parts.test;
    const auto m = trainers::evaluate(model, *parts.task, test, cfg.data, cpu);
    const auto& spec = test.spec();
    const int64_t s = spec.source_len, t = test.targets().size(1);
    const auto sources = test.inputs().narrow(1, 0, s);
    tasks::Forward fwd = [&](const at::Tensor& x) { return model.forward(x); };
    int64_t next = 0;
    const int64_t n = test.size();
    // Batch 1: 7 rounds of GR_B1_ITERS queries (default 40), the median round.
    const char* iters_env = std::getenv("GR_B1_ITERS");
    const int b1_iters = iters_env ? std::max(1, std::atoi(iters_env)) : 40;
    const double b1 = bench::time_us(
        [&] {
          tasks::beam_search(fwd, sources.narrow(0, next++ % n, 1), t, 10,
                             spec.valid_targets.get());
        },
        b1_iters, 7);
    const int64_t b = std::min<int64_t>(64, n);
    const double b64 = bench::time_us(
        [&] { tasks::beam_search(fwd, sources.narrow(0, 0, b), t, 10, spec.valid_targets.get()); },
        1, 3) / static_cast<double>(b);
    std::string load;
    std::ifstream("/proc/loadavg") >> load;
    auto metric = [&](const char* k) { return m.count(k) ? m.at(k) : -1.0; };
    std::printf("| %s | %lld | %lld | %lld | %.2f | %.3f | %.4f | %.4f | %.4f | %d | %s |\n",
                label.c_str(), static_cast<long long>(params), static_cast<long long>(nonzero),
                static_cast<long long>(bytes), b1 / 1000.0, b64 / 1000.0, metric("hits@1"),
                metric("hits@10"), metric("mrr@10"), at::get_num_threads(), load.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gr: %s\n", e.what());
    return 2;
  }
  return 0;
}
