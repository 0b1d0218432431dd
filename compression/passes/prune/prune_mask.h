// The prune pass's weight transform (w * mask, one bool per pattern unit) and the probe that
// counts a layer's output positions for FLOPs. Internal to the prune pass.
#pragma once

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/optimizer.h>
#include <torch/optim/sgd.h>
#include <torch/torch.h>

#include <algorithm>
#include <string>

#include "compression/passes/prune/prune_core.h"
#include "core/logging/logging.h"
#include "core/models/model.h"
#include "core/nn/layers.h"

namespace sculpt::compression::prune {

// w -> w * mask, the mask kept as one bool per unit and expanded (cached, bool) on w's device.
class MaskTransform final : public nn::WeightTransform {
 public:
  MaskTransform(Pattern p, int64_t rows, int64_t cols) : p_(std::move(p)), rows_(rows), cols_(cols) {}
  at::Tensor forward(const at::Tensor& w) override {
    if (!unit_mask_.defined()) return w;
    auto out = w * full(w);
    if (capture_ && out.requires_grad()) {
      out.retain_grad();
      last_ = out;
    }
    return out;
  }
  void set_mask(const at::Tensor& unit_mask) {
    unit_mask_ = unit_mask;
    full_ = at::Tensor();
  }
  const at::Tensor& unit_mask() const { return unit_mask_; }
  // The mask over the whole weight, shaped like it.
  const at::Tensor& full(const at::Tensor& like) {
    if (!full_.defined() || full_.device() != like.device())
      full_ = prune::expand_mask(unit_mask_.to(like.device()), rows_, cols_, p_)
                  .reshape(like.sizes())
                  .contiguous();
    return full_;
  }
  // rigl: keep the gradient of the masked weight (dense, also at pruned entries).
  void capture(bool on) {
    capture_ = on;
    if (!on) last_ = at::Tensor();
  }
  at::Tensor dense_grad() const { return last_.defined() ? last_.grad() : at::Tensor(); }

 private:
  Pattern p_;
  int64_t rows_, cols_;
  at::Tensor unit_mask_, full_, last_;
  bool capture_ = false;
};

// Sets the entries of parameter `p` where `drop` is true to zero, and their optimizer state too
// (SGD momentum, Adam/AdamW moments), so that they do not regrow at the next step.
inline void zero_entries(const at::Tensor& p, const at::Tensor& drop,
                         torch::optim::Optimizer* optimizer) {
  const_cast<at::Tensor&>(p).masked_fill_(drop, 0);
  if (!optimizer) return;
  auto it = optimizer->state().find(p.unsafeGetTensorImpl());
  if (it == optimizer->state().end()) return;
  auto zero = [&](const at::Tensor& t) {
    if (t.defined() && t.sizes() == p.sizes()) const_cast<at::Tensor&>(t).masked_fill_(drop, 0);
  };
  if (auto* sgd = dynamic_cast<torch::optim::SGDParamState*>(it->second.get())) {
    zero(sgd->momentum_buffer());
  } else if (auto* adam = dynamic_cast<torch::optim::AdamParamState*>(it->second.get())) {
    zero(adam->exp_avg());
    zero(adam->exp_avg_sq());
    zero(adam->max_exp_avg_sq());
  } else if (auto* adamw = dynamic_cast<torch::optim::AdamWParamState*>(it->second.get())) {
    zero(adamw->exp_avg());
    zero(adamw->exp_avg_sq());
    zero(adamw->max_exp_avg_sq());
  }
}

// Records how many output positions a layer computes per sample (FLOPs), then computes it.
class PositionProbe final : public nn::LayerRuntime {
 public:
  explicit PositionProbe(nn::Compressible* layer) : layer_(layer) {}
  at::Tensor forward(const at::Tensor& x) override {
    at::Tensor y;
    if (auto* conv = dynamic_cast<nn::Conv2d*>(layer_)) {
      y = at::conv2d(x, conv->effective_weight(), conv->bias(), {conv->stride, conv->stride},
                     {conv->padding, conv->padding}, {1, 1}, conv->groups);
      positions = y.size(-1) * y.size(-2);
    } else if (dynamic_cast<nn::Linear*>(layer_)) {
      y = at::linear(x, layer_->effective_weight(), layer_->bias());
      positions = x.size(-1) ? x.numel() / x.size(-1) / std::max<int64_t>(1, x.size(0)) : 1;
    } else {
      y = at::embedding(layer_->effective_weight(), x);
      positions = 0;  // a lookup: no multiply-adds
    }
    return y;
  }
  std::string describe() const override { return "probe"; }
  int64_t positions = 1;

 private:
  nn::Compressible* layer_;
};

// Output positions per sample of each of `layers` (for FLOPs), from one forward of `inputs` in
// eval mode; 1 for each when the forward fails (a warning naming `pass`).
inline std::vector<int64_t> measure_positions(models::Model& model,
                                              const std::vector<nn::Compressible*>& layers,
                                              const at::Tensor& inputs, const std::string& pass) {
  std::vector<std::shared_ptr<PositionProbe>> probes;
  for (auto* l : layers) {
    probes.push_back(std::make_shared<PositionProbe>(l));
    l->set_runtime(probes.back());
  }
  const bool training = model.is_training();
  model.eval();
  {
    torch::NoGradGuard no_grad;
    try {
      model.forward(inputs);
    } catch (const std::exception& e) {
      log::warn("compression pass ", pass, ": could not measure FLOPs (", e.what(), ")");
    }
  }
  model.train(training);
  std::vector<int64_t> out;
  for (size_t i = 0; i < layers.size(); ++i) {
    layers[i]->set_runtime(nullptr);
    out.push_back(probes[i]->positions);
  }
  return out;
}

}  // namespace sculpt::compression::prune
