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

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "compression/pass.h"

namespace sculpt::tasks {
class Task;
}

namespace sculpt::compression {

enum class EwcMode { online, separate };
inline const config::Spellings<EwcMode> kEwcModes = {{EwcMode::online, "online"},
                                                     {EwcMode::separate, "separate"}};
enum class FisherLabels { empirical, sampled };
inline const config::Spellings<FisherLabels> kFisherLabels = {
    {FisherLabels::empirical, "empirical"}, {FisherLabels::sampled, "true"}};

struct EwcOptions : config::Section {
  double lambda = 100.0;                          // strength of the penalty, >= 0
  EwcMode mode = EwcMode::online;                 // online | separate
  double gamma = 1.0;                             // online: decay of the old Fisher, [0, 1]
  FisherLabels fisher = FisherLabels::empirical;  // empirical (data labels) | true (sampled)
  int64_t samples = 1000;          // samples of the increment the Fisher is estimated on; 0: all
  bool include_bias = true;        // also protect biases
  void visit(config::Visitor& v) override;
};

// The diagonal Fisher of `params` (leaves of `forward`'s graph): the mean over the rows of
// `inputs` of the squared gradient of the task's per-sample negative log-likelihood
// -log p(y | x) (Task::sample_log_likelihood: cross-entropy for classes and token sequences, a
// unit Gaussian for regression), each sample on its own (never the square of a batch-mean
// gradient). `empirical`: y is the one in `targets`; otherwise drawn from the model with `gen`.
std::vector<at::Tensor> diagonal_fisher(const tasks::Task& task,
                                        const std::function<at::Tensor(const at::Tensor&)>& forward,
                                        const std::vector<at::Tensor>& params,
                                        const at::Tensor& inputs, const at::Tensor& targets,
                                        bool empirical, at::Generator gen);

std::unique_ptr<CompressionPass> make_ewc_pass(const config::PassConfig& cfg);

}  // namespace sculpt::compression
