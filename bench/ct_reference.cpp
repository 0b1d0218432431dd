// bench_ct_reference: the logits of a quantize run's integer model (<run>/quantized loaded as
// `sculpt eval --quantized` loads it) on fixed token ids, written where
// tests/hf/check_ct_export.py reads them (input_ids with -1 for padding, logits), so that
// bench/ct_export.sh checks transformers' load of a compressed-tensors export of a large model
// against Sculpt's integer model as the CI test does on the fixtures.
//   build/bin/bench_ct_reference RUN_DIR OUT.safetensors [VOCAB]
#include <torch/torch.h>

#include <cstdio>
#include <string>

#include "cli/app.h"
#include "compression/passes/quantize/int8_model.h"
#include "core/config/config.h"
#include "core/io/safetensors.h"
#include "trainers/run_parts.h"

int main(int argc, char** argv) {
  using namespace sculpt;
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench_ct_reference RUN_DIR OUT.safetensors [VOCAB]\n");
    return 2;
  }
  const std::string run = argv[1];
  const int64_t vocab = argc > 3 ? std::stoll(argv[3]) : 30;
  cli::register_builtins();
  auto cfg = config::Config::load(run + "/config.yaml");
  auto parts = trainers::build_run_parts(cfg, c10::Device(c10::kCPU));
  auto& model = *parts.model;
  model.load_state_tensors(io::load_safetensors(run + "/model.safetensors"),
                           run + "/model.safetensors");
  quant::load_quantized(model, run + "/quantized");
  model.eval();
  torch::NoGradGuard no_grad;
  at::manual_seed(5);
  at::Tensor ids = at::randint(4, vocab, {2, 16}, at::kLong);
  ids.select(0, 1).narrow(0, 12, 4).fill_(-1);
  io::save_safetensors(argv[2], {{"input_ids", ids}, {"logits", model.forward(ids)}});
  return 0;
}
