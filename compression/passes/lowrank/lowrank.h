// Low-rank passes (issue 7, part 6).
//   lora:    LoRA adapters (Hu et al. 2021): the chosen layers' weights become
//            W + (alpha / r) B A with A [r, in], B [out, r] trained (B starts at zero, so
//            training starts from W) and, by default, the rest of the model frozen as PEFT does
//            (bias: none; modules_to_save: what trains in full), so an update is the adapters
//            alone. finalize merges B A into W: the exported model is the plain model with the
//            same outputs. Listed after a prune pass it is refused: its B A would be added after
//            prune's mask (and a removed channel would not fit it); list lora first.
//   lowrank: SVD factorization of Linear layers: W [out, in] ~ U_k S_k V_k^T with k the fixed
//            `rank`, or the smallest k keeping `energy` of sum(sigma^2); the factors P = U_k S_k
//            and Q = V_k^T are trained (fine-tuning) in place of W. finalize writes P Q into W and
//            the layer runs as two thin GEMMs (x Q^T) P^T through a LayerRuntime where that has
//            fewer multiply-adds than W; `sculpt eval` rebuilds it from the rank-k weight.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "compression/pass.h"

namespace sculpt::compression {

// Which biases train beside the adapters when the base is frozen (PEFT's `bias`).
enum class LoraBias { none, all, lora_only };
inline const config::Spellings<LoraBias> kLoraBiases = {
    {LoraBias::none, "none"}, {LoraBias::all, "all"}, {LoraBias::lora_only, "lora_only"}};

struct LoraOptions : config::Section {
  int64_t rank = 8;          // r, >= 1
  double alpha = 16;         // scale alpha / r of the update
  double dropout = 0.0;      // dropout on A's entries while training, in [0, 1)
  // Train only the adapters (PEFT's default): every other parameter of the model is frozen,
  // except the biases `bias` names and the modules `modules_to_save` names. false: nothing is
  // frozen. Per layer (overrides): whether that layer's own weight stays fixed.
  bool freeze_base = true;
  LoraBias bias = LoraBias::none;            // none | all | lora_only (of the adapted layers)
  std::vector<std::string> modules_to_save;  // module-name regexes that train in full
  void visit(config::Visitor& v) override;
};

struct LowRankOptions : config::Section {
  int64_t rank = 0;      // fixed rank; 0: chosen by energy
  double energy = 0.9;   // keep at least this fraction of sum(sigma^2), in (0, 1]
  void visit(config::Visitor& v) override;
};

std::unique_ptr<CompressionPass> make_lora_pass(const config::PassConfig& cfg);
std::unique_ptr<CompressionPass> make_lowrank_pass(const config::PassConfig& cfg);

}  // namespace sculpt::compression
