// bench_quant_infer: inference latency of a quantize run's exported integer model (int8 GEMMs
// through at::_int_mm, convs through im2col) against the same model in FP32, on one batch of the
// config's validation data, same threads, one process. Also the bytes of both.
//   build/bin/bench_quant_infer CONFIG [key=value ...]   (the run of CONFIG must have finished)
#include <torch/torch.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "cli/app.h"
#include "compression/passes/quantize/int8_model.h"
#include "core/config/config.h"
#include "core/data/loader.h"
#include "core/io/safetensors.h"
#include "core/run/run_context.h"
#include "trainers/run_parts.h"

int main(int argc, char** argv) {
  using namespace sculpt;
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_quant_infer CONFIG [key=value ...]\n");
    return 2;
  }
  cli::register_builtins();
  std::vector<std::string> overrides(argv + 2, argv + argc);
  const auto cfg = config::Config::load(argv[1], overrides);
  const auto dir = RunContext::dir_for(cfg);
  const c10::Device cpu(c10::kCPU);
  auto fp = trainers::build_run_parts(cfg, cpu);
  fp.model->load_state_tensors(io::load_safetensors((dir / "model.safetensors").string()), "fp32");
  auto q = trainers::build_run_parts(cfg, cpu);
  const auto manifest = quant::load_quantized(*q.model, (dir / "quantized").string());
  data::Loader loader(fp.split.val, cfg.data.batch_size,
                      data::LoaderOptions::for_evaluation(cfg.data));
  data::Batch b;
  loader.next(b);
  fp.model->eval();
  q.model->eval();
  torch::NoGradGuard no_grad;
  std::printf("threads: %d, batch %lld, %s\n\n| model | bytes | forward (us) |\n|---|---|---|\n",
              at::get_num_threads(), static_cast<long long>(b.inputs.size(0)), cfg.model.name.c_str());
  const double t_fp = bench::time_us([&] { fp.model->forward(b.inputs); }, 20);
  const double t_q = bench::time_us([&] { q.model->forward(b.inputs); }, 20);
  std::printf("| FP32 | %lld | %.1f |\n", static_cast<long long>(manifest.at("fp32_bytes").get<int64_t>()), t_fp);
  std::printf("| int8 export | %lld | %.1f |\n", static_cast<long long>(manifest.at("bytes").get<int64_t>()), t_q);
  std::printf("\nint8 / FP32: bytes %.3f, latency %.2f\n",
              manifest.at("bytes").get<double>() / manifest.at("fp32_bytes").get<double>(), t_q / t_fp);
  return 0;
}
