// The optimizer family: name -> torch::optim optimizer over a parameter list, configured by
// the `optimizer:` section (lr, weight_decay) plus the entry's own options.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/config/config.h"
#include "core/registry/registry.h"

namespace at {
class Tensor;
}
namespace torch::optim {
class Optimizer;
}

namespace sculpt {

// Parameters split for weight decay: `no_decay` gets weight_decay 0 (its own param group).
struct ParamGroups {
  std::vector<at::Tensor> decay;
  std::vector<at::Tensor> no_decay;
};
// Biases and normalization parameters (every tensor of dim <= 1) go to no_decay when
// `exempt_bias_and_norm`; parameters that do not require grad are left out.
ParamGroups split_for_weight_decay(const std::vector<std::pair<std::string, at::Tensor>>& params,
                                   bool exempt_bias_and_norm);

using OptimizerRegistry =
    Registry<torch::optim::Optimizer, ParamGroups, const config::OptimizerConfig&>;
OptimizerRegistry& optimizer_registry();
void register_builtin_optimizers(OptimizerRegistry& r);

struct SgdOptions : config::Section {
  double momentum = 0.0;  // momentum factor, in [0, 1)
  bool nesterov = false;  // Nesterov momentum (needs momentum > 0)
  void visit(config::Visitor& v) override;
  void check(config::Checker& c) const override;
};

struct AdamOptions : config::Section {
  double beta1 = 0.9;    // first-moment decay, in [0, 1)
  double beta2 = 0.999;  // second-moment decay, in [0, 1)
  double eps = 1e-8;     // denominator term, > 0
  void visit(config::Visitor& v) override;
};

}  // namespace sculpt
