// The built-in passes: one line each (name, help, factory, options type), by family in the order
// of compression/passes/. Adding one: docs/writing-a-pass.md, "Adding a built-in pass".
#include "compression/compression.h"
#include "compression/pass.h"
#include "compression/passes/continual/ewc.h"
#include "compression/passes/continual/lwf.h"
#include "compression/passes/continual/replay.h"
#include "compression/passes/distill/distill.h"
#include "compression/passes/lowrank/lowrank.h"
#include "compression/passes/prune/prune.h"
#include "compression/passes/quantize/quantize.h"
#include "compression/passes/regularize/freeze.h"
#include "compression/passes/regularize/l2sp.h"

namespace sculpt::compression {

namespace {
using MakePass = std::unique_ptr<CompressionPass> (*)(const config::PassConfig&);

template <class Options>
void add(PassRegistry& r, const char* name, const char* help, MakePass make) {
  r.add(name, help, make, [] { return std::make_shared<Options>(); });
}
}  // namespace

void register_builtin_passes(PassRegistry& r) {
  // continual/
  add<EwcOptions>(r, "ewc",
                  "continual learning: elastic weight consolidation, lambda/2 * sum F (w - w*)^2 "
                  "with the diagonal Fisher of every increment (per-sample gradients; online or "
                  "one per increment)",
                  make_ewc_pass);
  add<ReplayOptions>(r, "replay",
                     "continual learning: a buffer of past samples (reservoir, class_balanced or "
                     "importance) replayed with every batch",
                     make_replay_pass);
  add<LwfOptions>(r, "lwf",
                  "continual learning: learning without forgetting, KD from the model as it was "
                  "at the start of the increment",
                  make_lwf_pass);
  // distill/
  add<DistillOptions>(r, "distill",
                      "knowledge distillation from Sculpt or TorchScript teachers: logit/per-token "
                      "KD, features, relational, ranking",
                      make_distill_pass);
  // lowrank/
  add<LoraOptions>(r, "lora",
                   "LoRA adapters W + (alpha/r) B A on the chosen layers, merged into W at the end",
                   make_lora_pass);
  add<LowRankOptions>(r, "lowrank",
                      "SVD factorization of Linear layers (fixed rank or energy), fine-tuned",
                      make_lowrank_pass);
  // prune/
  add<PruneOptions>(r, "prune",
                    "gradual pruning: unstructured, n:m, blocks or channels on a schedule (agp, "
                    "...)",
                    make_prune_pass);
  // quantize/
  add<QuantizeOptions>(r, "quantize",
                       "QAT / PTQ: fake-quant weights and inputs (2-8 bits, per "
                       "tensor/channel/group, LSQ, PACT, BN folding), exports a verified int8 "
                       "model to <run>/quantized",
                       make_quantize_pass);
  // regularize/
  add<FreezeOptions>(r, "freeze",
                     "keeps the chosen layers' weights fixed until step unfreeze_at (0: whole run)",
                     make_freeze_pass);
  add<L2spOptions>(r, "l2sp",
                   "pulls the chosen layers toward their initial weights: alpha/2 * sum((w - "
                   "w0)^2)",
                   make_l2sp_pass);
}

void register_compression_builtins() {
  register_builtin_passes(pass_registry());
}

}  // namespace sculpt::compression
