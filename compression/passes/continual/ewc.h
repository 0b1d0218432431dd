// ewc: Elastic Weight Consolidation (Kirkpatrick et al. 2017) for continual learning. At the end
// of every increment (incremental trainer) it estimates the diagonal Fisher information of the
// chosen layers' parameters from per-sample gradients, and from then on adds
// lambda/2 * sum F (theta - theta*)^2 to the objective: its gradient lambda F (theta - theta*)
// goes into the gradients after backward in one fused pass (the value is in the summary, not in
// the logged task loss). `online` keeps one Fisher, decayed by gamma
// at every increment (Schwarz et al. 2018); `separate` keeps one penalty per past increment.
// lambda per layer through `overrides:` (first match wins).
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "compression/pass.h"

namespace sculpt::compression {

struct EwcOptions : config::Section {
  double lambda = 100.0;           // strength of the penalty, >= 0
  std::string mode = "online";     // online | separate
  double gamma = 1.0;              // online: decay of the old Fisher per increment, [0, 1]
  std::string fisher = "empirical";  // empirical (true labels) | true (labels sampled)
  int64_t samples = 1000;          // samples of the increment the Fisher is estimated on; 0: all
  bool include_bias = true;        // also protect biases
  void visit(config::Visitor& v) override;
};

// The diagonal Fisher of `params` (leaves of `forward`'s graph): the mean over the rows of
// `inputs` of the squared gradient of the per-sample cross-entropy, -log p(y | x), each sample
// on its own (never the square of a batch-mean gradient). `empirical`: y is the label in
// `targets`; otherwise y is drawn from the model's softmax with `gen`. Token-sequence targets
// ([N, T], outputs [N, T, V]): -log p of the sequence, summed over its non-padding positions.
std::vector<at::Tensor> diagonal_fisher(const std::function<at::Tensor(const at::Tensor&)>& forward,
                                        const std::vector<at::Tensor>& params,
                                        const at::Tensor& inputs, const at::Tensor& targets,
                                        bool empirical, at::Generator gen);

std::unique_ptr<CompressionPass> make_ewc_pass(const config::PassConfig& cfg);

}  // namespace sculpt::compression
