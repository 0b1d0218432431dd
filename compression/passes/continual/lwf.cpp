#include "compression/passes/continual/lwf.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "compression/passes/pass_options.h"

#include "compression/passes/distill/distill_losses.h"
#include "core/data/loader.h"
#include "core/error.h"
#include "core/models/model.h"
#include "core/run/run_context.h"

namespace sculpt::compression {

void LwfOptions::visit(config::Visitor& v) {
  v.field("alpha", alpha, "lwf: weight of the distillation from the previous increment's model",
          config::Range::at_least(0));
  v.field("tau", tau, "lwf: softmax temperature of the distillation", config::Range::above(0));
}

namespace {

class LwfPass final : public CompressionPass {
 public:
  using CompressionPass::CompressionPass;

  void attach(models::Model& /*model*/, const StepContext& ctx) override {
    SCULPT_CHECK(ctx.new_model, "compression pass lwf: needs a run (to build the teacher model)");
    new_model_ = ctx.new_model;
    device_ = ctx.device;
  }

  // The model as it is now teaches the next increment.
  void on_increment_end(models::Model& model, const data::Dataset& /*seen*/,
                        const StepContext& /*ctx*/) override {
    set_teacher(model.state_tensors());
  }

  at::Tensor extra_loss(models::Model& /*model*/, const StepContext& ctx) override {
    if (!teacher_ || !ctx.outputs || !ctx.batch) return {};
    at::Tensor t;
    {
      torch::NoGradGuard no_grad;
      t = teacher_->forward(ctx.batch->inputs).to(at::kFloat);
    }
    return kd_kl_loss(*ctx.outputs, t, options().tau) * options().alpha;
  }

  CallbackState state_dict() const override {
    CallbackState s;
    if (teacher_)
      for (auto& [name, t] : teacher_->state_tensors()) s.tensors.emplace_back(name, t);
    s.meta = {{"has_teacher", teacher_ != nullptr}};
    return s;
  }

  void load_state_dict(const CallbackState& state) override {
    teacher_.reset();
    if (state.meta.value("has_teacher", false)) set_teacher(state.tensors);
  }

  std::string pipeline_limitation() const override {
    return "it distils the whole model's outputs against its earlier self on the raw inputs; "
           "missing piece: the pipeline step gives extra_loss neither the last stage's outputs "
           "nor, on that stage, the batch's raw inputs";
  }
  nlohmann::json summary() const override {
    return {{"alpha", options().alpha}, {"tau", options().tau}, {"has_teacher", teacher_ != nullptr}};
  }

 private:
  const LwfOptions& options() const { return pass_options<LwfOptions>(*this); }

  // A frozen model holding `weights`. Building it initializes weights at random: the global
  // generator is put back afterwards so that training draws what it would have drawn.
  void set_teacher(const io::NamedTensors& weights) {
    auto gen = at::detail::getDefaultCPUGenerator();
    const auto rng_state = gen.get_state();
    teacher_ = new_model_();
    gen.set_state(rng_state);
    torch::NoGradGuard no_grad;
    teacher_->load_state_tensors(weights, "lwf teacher");
    teacher_->to(device_);
    teacher_->eval();
    for (auto& p : teacher_->parameters()) p.requires_grad_(false);
  }

  std::function<std::shared_ptr<models::Model>()> new_model_;  // the run's architecture
  c10::Device device_ = c10::Device(c10::kCPU);
  std::shared_ptr<models::Model> teacher_;
};

}  // namespace

std::unique_ptr<CompressionPass> make_lwf_pass(const config::PassConfig& cfg) {
  return std::make_unique<LwfPass>(cfg);
}

}  // namespace sculpt::compression
