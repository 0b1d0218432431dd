// l2sp: extra_loss = sum over chosen layers of alpha/2 * ||w - w0||^2 (its gradient is
// alpha * (w - w0)). w0 is taken at attach — the weights training starts from — and saved in
// the pass state, so a resumed run pulls toward the same point even if the model it rebuilt
// before loading the checkpoint started elsewhere.
#include "compression/passes/regularize/l2sp.h"

#include <torch/torch.h>

#include <cmath>

#include "compression/passes/pass_options.h"
#include "core/error.h"
#include "core/models/model.h"

namespace sculpt::compression {

void L2spOptions::visit(config::Visitor& v) {
  v.field("alpha", alpha, "l2sp: strength; adds alpha/2 * sum((w - w0)^2) to the loss",
          config::Range::at_least(0));
  v.field("include_bias", include_bias, "l2sp: also pull biases toward their initial values");
}

namespace {

class L2spPass final : public CompressionPass {
 public:
  using CompressionPass::CompressionPass;

  void attach(models::Model& model, const StepContext& /*ctx*/) override {
    anchors_.clear();
    for_each_weight<L2spOptions>(*this, model,
                                 [&](const Target& t, const std::string& key, const at::Tensor& w,
                                     const L2spOptions& o) {
                                   anchors_.push_back({t.name, key, w, w.detach().clone(), o.alpha});
                                 });
  }

  at::Tensor extra_loss(models::Model& /*model*/, const StepContext& /*ctx*/) override {
    at::Tensor total;
    for (auto& a : anchors_) {
      if (a.alpha == 0) continue;
      if (a.initial.device() != a.param.device()) a.initial = a.initial.to(a.param.device());
      auto term = (a.param - a.initial).pow(2).sum() * (a.alpha / 2);
      total = total.defined() ? total + term : term;
    }
    return total;
  }

  CallbackState state_dict() const override {
    CallbackState s;
    for (const auto& a : anchors_) s.tensors.emplace_back(a.key, a.initial);
    return s;
  }

  void load_state_dict(const CallbackState& state) override {
    for (auto& a : anchors_) {
      const at::Tensor* saved = nullptr;
      for (const auto& [key, t] : state.tensors)
        if (key == a.key) saved = &t;
      SCULPT_CHECK(saved, "compression pass l2sp: the saved state has no initial weights for ",
                   a.key, " (was the checkpoint written with other layers or include_bias?)");
      SCULPT_CHECK(saved->sizes() == a.param.sizes(), "compression pass l2sp: saved ", a.key,
                   " has shape ", saved->sizes(), ", the layer ", a.param.sizes());
      a.initial = saved->to(a.param.device(), a.param.scalar_type());
    }
  }

  // Per layer: ||w - w0|| and ||w - w0|| / ||w0|| over its anchored tensors.
  std::string pipeline_limitation() const override { return {}; }
  nlohmann::json summary() const override {
    torch::NoGradGuard no_grad;
    nlohmann::json layers = nlohmann::json::array();
    for (size_t i = 0; i < anchors_.size();) {
      const std::string& layer = anchors_[i].layer;
      double moved = 0, start = 0;
      for (; i < anchors_.size() && anchors_[i].layer == layer; ++i) {
        const auto& a = anchors_[i];
        moved += (a.param - a.initial.to(a.param.device())).pow(2).sum().item<double>();
        start += a.initial.pow(2).sum().item<double>();
      }
      nlohmann::json j = {
          {"name", layer}, {"alpha", anchors_[i - 1].alpha}, {"distance", std::sqrt(moved)}};
      if (start > 0) j["relative_distance"] = std::sqrt(moved / start);
      layers.push_back(j);
    }
    return {{"layers", layers}};
  }

 private:
  struct Anchor {
    std::string layer;   // dotted layer name
    std::string key;     // <layer>.weight or <layer>.bias: the state tensor's name
    at::Tensor param;    // the live parameter
    at::Tensor initial;  // w0
    double alpha = 0;
  };
  std::vector<Anchor> anchors_;
};

}  // namespace

std::unique_ptr<CompressionPass> make_l2sp_pass(const config::PassConfig& cfg) {
  return std::make_unique<L2spPass>(cfg);
}

}  // namespace sculpt::compression
