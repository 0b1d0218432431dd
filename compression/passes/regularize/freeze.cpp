// freeze. A frozen parameter must not move at all, and setting requires_grad=false before the
// optimizer exists is not enough: the optimizer would then leave it out for good (no training
// after unfreeze_at). So the parameters stay in the optimizer (attach runs before it is built)
// and requires_grad is turned off at the first batch. A parameter without a gradient is
// skipped by torch's optimizers — no momentum, no weight decay — and costs no backward work;
// after_backward drops any gradient that reached one anyway. At step unfreeze_at
// requires_grad comes back and the layer trains from the next step on.
#include "compression/passes/regularize/freeze.h"

#include <torch/torch.h>

#include "core/error.h"
#include "core/logging/logging.h"
#include "core/models/model.h"

namespace sculpt::compression {

void FreezeOptions::visit(config::Visitor& v) {
  v.step_point("unfreeze_at", unfreeze_at,
               "freeze: step (or 2e, or 0.5 of the run) after which the layers train again; 0: "
               "frozen for the whole run");
}

namespace {

class FreezePass final : public CompressionPass {
 public:
  using CompressionPass::CompressionPass;

  void attach(models::Model& model, const StepContext& ctx) override {
    static const FreezeOptions defaults;
    layers_.clear();
    for (const auto& t : select_layers(model)) {
      const auto& at = (t.options ? options_of<FreezeOptions>(t) : defaults).unfreeze_at;
      Layer l{t.name, {}, resolve_step(at, ctx, "compression freeze: unfreeze_at")};
      for (const auto& p : t.layer->named_parameters(/*recurse=*/false))
        l.params.push_back(p.value());
      layers_.push_back(std::move(l));
    }
  }

  void on_batch(data::Batch& /*batch*/, const StepContext& ctx) override { apply(ctx.step); }

  at::Tensor extra_loss(models::Model& /*model*/, const StepContext& ctx) override {
    // Without this, backward() fails with torch's "element 0 of tensors does not require grad".
    SCULPT_CHECK(!ctx.loss || ctx.loss->requires_grad(),
                 "compression pass freeze: every trained parameter of the model is frozen at step ",
                 ctx.step + 1, ", so the loss has no gradient; leave some layers out (exclude)");
    return {};
  }

  void after_backward(models::Model& /*model*/, const StepContext& ctx) override {
    for (auto& l : layers_)
      if (frozen(l, ctx.step))
        for (auto& p : l.params)
          if (p.grad().defined()) p.mutable_grad().reset();
  }

  void after_step(models::Model& /*model*/, const StepContext& ctx) override {
    steps_ = ctx.step;
    apply(ctx.step);
  }

  void finalize(models::Model& /*model*/, const StepContext& /*ctx*/) override {
    // The model leaves fit() trainable, as it came in.
    for (auto& l : layers_) set_trainable(l, true);
  }

  CallbackState state_dict() const override {
    CallbackState s;
    s.meta["step"] = steps_;
    return s;
  }

  void load_state_dict(const CallbackState& state) override {
    SCULPT_CHECK(state.meta.contains("step") && state.meta["step"].is_number_integer(),
                 "compression pass freeze: the saved state has no integer 'step'");
    steps_ = state.meta["step"].get<int64_t>();
  }

  std::string pipeline_limitation() const override { return {}; }
  nlohmann::json summary() const override {
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& l : layers_)
      layers.push_back(
          {{"name", l.name},
           {"unfreeze_at", l.unfreeze_at},
           {"steps_frozen", l.unfreeze_at == 0 ? steps_ : std::min(steps_, l.unfreeze_at)},
           {"unfrozen", !frozen(l, steps_)}});
    return {{"layers", layers}, {"steps", steps_}};
  }

 private:
  struct Layer {
    std::string name;
    std::vector<at::Tensor> params;  // the layer's own weight and bias
    int64_t unfreeze_at = 0;
    bool trainable = true;
  };

  // Whether the step after `done` steps leaves the layer unchanged.
  static bool frozen(const Layer& l, int64_t done) {
    return l.unfreeze_at == 0 || done < l.unfreeze_at;
  }

  static void set_trainable(Layer& l, bool on) {
    for (auto& p : l.params) p.set_requires_grad(on);
    l.trainable = on;
  }

  void apply(int64_t done) {
    for (auto& l : layers_) {
      const bool on = !frozen(l, done);
      if (on == l.trainable) continue;
      if (on) log::info("freeze: ", l.name, " trains again from step ", done + 1);
      set_trainable(l, on);
    }
  }

  std::vector<Layer> layers_;
  int64_t steps_ = 0;  // optimizer steps done
};

}  // namespace

std::unique_ptr<CompressionPass> make_freeze_pass(const config::PassConfig& cfg) {
  return std::make_unique<FreezePass>(cfg);
}

}  // namespace sculpt::compression
