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

namespace {
// Two groups: decayed weights, and biases/norm parameters with weight decay 0.
template <class Opt, class Options>
std::unique_ptr<torch::optim::Optimizer> build(ParamGroups g, Options o, double weight_decay) {
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (!g.decay.empty())
    groups.emplace_back(std::move(g.decay),
                        std::make_unique<Options>(Options(o).weight_decay(weight_decay)));
  if (!g.no_decay.empty())
    groups.emplace_back(std::move(g.no_decay),
                        std::make_unique<Options>(Options(o).weight_decay(0.0)));
  return std::make_unique<Opt>(std::move(groups), o.weight_decay(weight_decay));
}
}  // namespace

ParamGroups split_for_weight_decay(const std::vector<std::pair<std::string, at::Tensor>>& params,
                                   bool exempt_bias_and_norm) {
  ParamGroups g;
  for (const auto& [name, p] : params) {
    if (!p.requires_grad()) continue;
    (exempt_bias_and_norm && p.dim() <= 1 ? g.no_decay : g.decay).push_back(p);
  }
  return g;
}

void register_builtin_optimizers(OptimizerRegistry& r) {
  r.add(
      "sgd", "stochastic gradient descent, optional (Nesterov) momentum",
      [](ParamGroups params, const config::OptimizerConfig& c) {
        const auto& o = opts<SgdOptions>(c);
        return build<torch::optim::SGD>(
            std::move(params),
            torch::optim::SGDOptions(c.lr).momentum(o.momentum).nesterov(o.nesterov),
            c.weight_decay);
      },
      [] { return std::make_shared<SgdOptions>(); });
  r.add(
      "adam", "Adam (L2 weight decay added to the gradient)",
      [](ParamGroups params, const config::OptimizerConfig& c) {
        const auto& o = opts<AdamOptions>(c);
        return build<torch::optim::Adam>(
            std::move(params), torch::optim::AdamOptions(c.lr).betas({o.beta1, o.beta2}).eps(o.eps),
            c.weight_decay);
      },
      [] { return std::make_shared<AdamOptions>(); });
  r.add(
      "adamw", "AdamW (decoupled weight decay)",
      [](ParamGroups params, const config::OptimizerConfig& c) {
        const auto& o = opts<AdamOptions>(c);
        return build<torch::optim::AdamW>(
            std::move(params),
            torch::optim::AdamWOptions(c.lr).betas({o.beta1, o.beta2}).eps(o.eps), c.weight_decay);
      },
      [] { return std::make_shared<AdamOptions>(); });
}

}  // namespace sculpt
