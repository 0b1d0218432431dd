// The prune pass's Scorers: the importance of each weight of a layer as a [rows, cols] matrix
// (higher = keep). Magnitude reads the weight; the gradient scorers sum evidence from every
// backward since the last mask update (taylor |w g|, movement -w g, fisher g^2 — the diagonal
// empirical Fisher, or the one the recipe's EWC pass published, times w^2 / 2). One Scorer
// object per layer, chosen at attach from the layer's `scorer:`.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>

#include "core/config/section.h"

namespace sculpt::compression::prune {

enum class ScorerKind { magnitude, taylor, movement, fisher };
inline const config::Spellings<ScorerKind> kScorerKinds = {{ScorerKind::magnitude, "magnitude"},
                                                           {ScorerKind::taylor, "taylor"},
                                                           {ScorerKind::movement, "movement"},
                                                           {ScorerKind::fisher, "fisher"}};

class Scorer {
 public:
  virtual ~Scorer() = default;
  // Whether evidence() gives anything (magnitude needs no gradients).
  virtual bool uses_gradients() const { return true; }
  // This step's evidence from the weight and its gradient (both [rows, cols]), summed by the
  // pass until the next mask update.
  virtual at::Tensor evidence(const at::Tensor& w2d, const at::Tensor& g2d) const = 0;
  // The element scores from the weight, the summed evidence (`acc` over `acc_steps` steps;
  // undefined or 0 when none) and the Fisher published for the weight (undefined when none).
  virtual at::Tensor scores(const at::Tensor& w2d, const at::Tensor& acc, int64_t acc_steps,
                            const at::Tensor& published_fisher) const = 0;
};

std::unique_ptr<Scorer> make_scorer(ScorerKind kind);

}  // namespace sculpt::compression::prune
