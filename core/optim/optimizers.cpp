#include "core/optim/optimizers.h"

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <ATen/ops/_fused_adam.h>
#include <ATen/ops/_fused_adamw.h>

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
// Adam and AdamW with ATen's fused update (one pass over each parameter: what
// torch.optim.AdamW(fused=True) runs) instead of torch::optim's seven tensor operations per
// parameter. The state is torch::optim's own (exp_avg, exp_avg_sq, step), so checkpoints and
// resume are unchanged; amsgrad and sparse gradients take the base class's path.
template <class Base, class Options, class State, bool decoupled>
class FusedAdam final : public Base {
 public:
  using Base::Base;
  at::Tensor step(torch::optim::Optimizer::LossClosure closure = nullptr) override {
    for (auto& group : this->param_groups())
      for (auto& p : group.params())
        if (static_cast<const Options&>(group.options()).amsgrad() ||
            (p.grad().defined() && (p.grad().is_sparse() || !p.is_contiguous())))
          return Base::step(std::move(closure));
    at::NoGradGuard no_grad;
    at::Tensor loss;
    if (closure) {
      at::AutoGradMode grad_on(true);
      loss = closure();
    }
    for (auto& group : this->param_groups()) {
      const auto& o = static_cast<const Options&>(group.options());
      std::vector<at::Tensor> params, grads, exp_avgs, exp_avg_sqs, steps;
      for (auto& p : group.params()) {
        if (!p.grad().defined()) continue;
        auto& slot = this->state_[p.unsafeGetTensorImpl()];
        if (!slot) {
          auto fresh = std::make_unique<State>();
          fresh->step(0);
          fresh->exp_avg(at::zeros_like(p, at::MemoryFormat::Preserve));
          fresh->exp_avg_sq(at::zeros_like(p, at::MemoryFormat::Preserve));
          slot = std::move(fresh);
        }
        auto& st = static_cast<State&>(*slot);
        st.step(st.step() + 1);
        params.push_back(p);
        grads.push_back(p.grad());
        exp_avgs.push_back(st.exp_avg());
        exp_avg_sqs.push_back(st.exp_avg_sq());
        steps.push_back(at::scalar_tensor(static_cast<double>(st.step()),
                                          p.options().dtype(at::kFloat)));
      }
      if (params.empty()) continue;
      const auto [beta1, beta2] = o.betas();
      if (decoupled)
        at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, {}, steps, o.lr(), beta1, beta2,
                          o.weight_decay(), o.eps(), false, false);
      else
        at::_fused_adam_(params, grads, exp_avgs, exp_avg_sqs, {}, steps, o.lr(), beta1, beta2,
                         o.weight_decay(), o.eps(), false, false);
    }
    return loss;
  }
};
using FusedAdamOptimizer =
    FusedAdam<torch::optim::Adam, torch::optim::AdamOptions, torch::optim::AdamParamState, false>;
using FusedAdamWOptimizer = FusedAdam<torch::optim::AdamW, torch::optim::AdamWOptions,
                                      torch::optim::AdamWParamState, true>;

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
        return build<FusedAdamOptimizer>(
            std::move(params), torch::optim::AdamOptions(c.lr).betas({o.beta1, o.beta2}).eps(o.eps),
            c.weight_decay);
      },
      [] { return std::make_shared<AdamOptions>(); });
  r.add(
      "adamw", "AdamW (decoupled weight decay)",
      [](ParamGroups params, const config::OptimizerConfig& c) {
        const auto& o = opts<AdamOptions>(c);
        return build<FusedAdamWOptimizer>(
            std::move(params),
            torch::optim::AdamWOptions(c.lr).betas({o.beta1, o.beta2}).eps(o.eps), c.weight_decay);
      },
      [] { return std::make_shared<AdamOptions>(); });
}

}  // namespace sculpt
