#include "compression/compression.h"
#include "compression/pass.h"
#include "compression/passes/regularize/freeze.h"
#include "compression/passes/regularize/l2sp.h"
#include "compression/passes/lowrank/lowrank.h"
#include "compression/passes/prune/prune.h"
#include "compression/passes/distill/distill.h"
#include "compression/passes/quantize/quantize.h"
#include "compression/passes/continual/ewc.h"
#include "compression/passes/continual/lwf.h"
#include "compression/passes/continual/replay.h"

namespace sculpt::compression {

void register_builtin_passes(PassRegistry& r) {
  add_distill(r);
  add_quantize(r);
  r.add("freeze", "keeps the chosen layers' weights fixed until step unfreeze_at (0: whole run)",
        make_freeze_pass, [] { return std::make_shared<FreezeOptions>(); });
  r.add("l2sp", "pulls the chosen layers toward their initial weights: alpha/2 * sum((w - w0)^2)",
        make_l2sp_pass, [] { return std::make_shared<L2spOptions>(); });
  r.add("prune", "gradual pruning: unstructured, n:m, blocks or channels on a schedule (agp, ...)",
        make_prune_pass, [] { return std::make_shared<PruneOptions>(); });
  r.add("lora", "LoRA adapters W + (alpha/r) B A on the chosen layers, merged into W at the end",
        make_lora_pass, [] { return std::make_shared<LoraOptions>(); });
  r.add("lowrank", "SVD factorization of Linear layers (fixed rank or energy), fine-tuned",
        make_lowrank_pass, [] { return std::make_shared<LowRankOptions>(); });
  r.add("ewc",
        "continual learning: elastic weight consolidation, lambda/2 * sum F (w - w*)^2 with the "
        "diagonal Fisher of every increment (per-sample gradients; online or one per increment)",
        make_ewc_pass, [] { return std::make_shared<EwcOptions>(); });
  r.add("replay",
        "continual learning: a buffer of past samples (reservoir, class_balanced or importance) "
        "replayed with every batch",
        make_replay_pass, [] { return std::make_shared<ReplayOptions>(); });
  r.add("lwf",
        "continual learning: learning without forgetting, KD from the model as it was at the "
        "start of the increment",
        make_lwf_pass, [] { return std::make_shared<LwfOptions>(); });
}

void register_compression_builtins() {
  register_builtin_passes(pass_registry());
}

}  // namespace sculpt::compression
