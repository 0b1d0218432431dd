#include "core/optim/optimizers.h"

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

namespace sculpt {

void SgdOptions::visit(config::Visitor& v) {
  v.field("momentum", momentum, "SGD momentum factor", config::Range::half_open(0, 1));
  v.field("nesterov", nesterov, "Nesterov momentum (needs momentum > 0)");
}

void SgdOptions::check(config::Checker& c) const {
  if (nesterov && momentum <= 0)
    c.error("nesterov", "Nesterov momentum needs optimizer.momentum > 0");
}

void AdamOptions::visit(config::Visitor& v) {
  v.field("beta1", beta1, "Adam first-moment decay", config::Range::half_open(0, 1));
  v.field("beta2", beta2, "Adam second-moment decay", config::Range::half_open(0, 1));
  v.field("eps", eps, "Adam denominator epsilon", config::Range::above(0));
}

OptimizerRegistry& optimizer_registry() {
  static OptimizerRegistry registry("optimizers");
  return registry;
}

namespace {
template <class T>
const T& opts(const config::OptimizerConfig& c) {
  static const T defaults;
  return c.options ? dynamic_cast<const T&>(*c.options) : defaults;
}
}  // namespace

void register_builtin_optimizers(OptimizerRegistry& r) {
  r.add(
      "sgd", "stochastic gradient descent, optional (Nesterov) momentum",
      [](std::vector<at::Tensor> params, const config::OptimizerConfig& c) {
        const auto& o = opts<SgdOptions>(c);
        return std::make_unique<torch::optim::SGD>(std::move(params),
                                                   torch::optim::SGDOptions(c.lr)
                                                       .momentum(o.momentum)
                                                       .nesterov(o.nesterov)
                                                       .weight_decay(c.weight_decay));
      },
      [] { return std::make_shared<SgdOptions>(); });
  r.add(
      "adam", "Adam (L2 weight decay added to the gradient)",
      [](std::vector<at::Tensor> params, const config::OptimizerConfig& c) {
        const auto& o = opts<AdamOptions>(c);
        return std::make_unique<torch::optim::Adam>(std::move(params),
                                                    torch::optim::AdamOptions(c.lr)
                                                        .betas({o.beta1, o.beta2})
                                                        .eps(o.eps)
                                                        .weight_decay(c.weight_decay));
      },
      [] { return std::make_shared<AdamOptions>(); });
  r.add(
      "adamw", "AdamW (decoupled weight decay)",
      [](std::vector<at::Tensor> params, const config::OptimizerConfig& c) {
        const auto& o = opts<AdamOptions>(c);
        return std::make_unique<torch::optim::AdamW>(std::move(params),
                                                     torch::optim::AdamWOptions(c.lr)
                                                         .betas({o.beta1, o.beta2})
                                                         .eps(o.eps)
                                                         .weight_decay(c.weight_decay));
      },
      [] { return std::make_shared<AdamOptions>(); });
}

}  // namespace sculpt
