// lora and lowrank. Both are weight transforms whose parameters live in the layer (so the
// checkpoint carries them with the model and a resume is exact) and are baked into the raw
// weight at finalize. LoRA's dropout acts on the entries of A while training (the adapter is a
// weight transform, so it never sees the layer's input; the paper drops the input of the
// adapter branch instead) — a documented difference.
#include "compression/passes/lowrank/lowrank.h"

#include <torch/torch.h>

#include <cmath>

#include "compression/runtimes.h"
#include "core/error.h"
#include "core/logging/logging.h"
#include "core/models/model.h"

namespace sculpt::compression {

void LoraOptions::visit(config::Visitor& v) {
  v.field("rank", rank, "lora: rank r of the adapters", config::Range::at_least(1));
  v.field("alpha", alpha, "lora: the update is (alpha / r) B A", config::Range::above(0));
  v.field("dropout", dropout, "lora: dropout on the entries of A while training",
          config::Range::half_open(0, 1));
  v.field("freeze_base", freeze_base, "lora: train only the adapters (the layer's weight is fixed)");
}

void LowRankOptions::visit(config::Visitor& v) {
  v.field("rank", rank, "lowrank: fixed rank of the factorization; 0: chosen by energy",
          config::Range::at_least(0));
  v.field("energy", energy, "lowrank: keep at least this fraction of sum(sigma^2)",
          config::Range{0, 1, true, true, true, false});
}

namespace {

at::Tensor as_matrix(const at::Tensor& w) { return w.reshape({w.size(0), -1}); }

// Writes `weight` into the layer's raw weight, drops the transform `name`, trains the weight again.
void bake(nn::Compressible& layer, const std::string& name, const at::Tensor& weight) {
  torch::NoGradGuard no_grad;
  const auto& w = layer.raw_weight();
  const_cast<at::Tensor&>(w).copy_(weight);
  layer.remove_weight_transform(name);
  w.set_requires_grad(true);
}

class LoraTransform final : public nn::WeightTransform {
 public:
  LoraTransform(int64_t out, int64_t in, const LoraOptions& o)
      : scale_(o.alpha / static_cast<double>(o.rank)), dropout_(o.dropout) {
    a_ = register_parameter("a", torch::empty({o.rank, in}));
    b_ = register_parameter("b", torch::zeros({out, o.rank}));
    torch::NoGradGuard no_grad;
    torch::nn::init::kaiming_uniform_(a_, std::sqrt(5.0));
  }
  at::Tensor forward(const at::Tensor& w) override {
    auto a = is_training() && dropout_ > 0 ? at::dropout(a_, dropout_, true) : a_;
    return w + (b_.mm(a) * scale_).view(w.sizes());
  }
  at::Tensor delta(const at::Tensor& w) const { return (b_.mm(a_) * scale_).view(w.sizes()); }
  int64_t params() const { return a_.numel() + b_.numel(); }

 private:
  at::Tensor a_, b_;
  double scale_, dropout_;
};

class LoraPass final : public CompressionPass {
 public:
  using CompressionPass::CompressionPass;
  void attach(models::Model& model, const StepContext& /*ctx*/) override {
    static const LoraOptions defaults;
    layers_.clear();
    for (const auto& t : select_layers(model)) {
      const auto& o = t.options ? options_of<LoraOptions>(t) : defaults;
      const auto w = as_matrix(t.layer->raw_weight());
      auto lora = std::make_shared<LoraTransform>(w.size(0), w.size(1), o);
      lora->to(t.layer->raw_weight().device());
      t.layer->add_weight_transform("lora", lora);
      if (o.freeze_base) t.layer->raw_weight().set_requires_grad(false);
      layers_.push_back({t.name, t.layer, lora, o});
    }
  }
  void finalize(models::Model& /*model*/, const StepContext& /*ctx*/) override {
    torch::NoGradGuard no_grad;
    for (auto& l : layers_) {
      const auto& w = l.layer->raw_weight();
      bake(*l.layer, "lora", w + l.lora->delta(w));
      merged_ = true;
    }
  }
  std::string pipeline_limitation() const override { return {}; }
  nlohmann::json summary() const override {
    nlohmann::json layers = nlohmann::json::array();
    int64_t adapters = 0;
    for (const auto& l : layers_) {
      layers.push_back({{"name", l.name},
                        {"rank", l.o.rank},
                        {"alpha", l.o.alpha},
                        {"adapter_params", l.lora->params()},
                        {"base_params", l.layer->raw_weight().numel()},
                        {"frozen_base", l.o.freeze_base}});
      adapters += l.lora->params();
    }
    return {{"layers", layers}, {"adapter_params", adapters}, {"merged", merged_}};
  }
 private:
  struct Layer {
    std::string name;
    std::shared_ptr<nn::Compressible> layer;
    std::shared_ptr<LoraTransform> lora;
    LoraOptions o;
  };
  std::vector<Layer> layers_;
  bool merged_ = false;
};

// W = P Q, P [out, k], Q [k, in].
class FactorTransform final : public nn::WeightTransform {
 public:
  FactorTransform(at::Tensor p, at::Tensor q) {
    p_ = register_parameter("p", std::move(p));
    q_ = register_parameter("q", std::move(q));
  }
  at::Tensor forward(const at::Tensor& w) override { return p_.mm(q_).view(w.sizes()); }
  int64_t rank() const { return p_.size(1); }

 private:
  at::Tensor p_, q_;
};

// y = (x Q^T) P^T + b.
class FactorRuntime final : public nn::LayerRuntime {
 public:
  FactorRuntime(at::Tensor p, at::Tensor q, at::Tensor bias)
      : p_(std::move(p)), q_(std::move(q)), bias_(std::move(bias)) {}
  at::Tensor forward(const at::Tensor& x) override {
    return at::linear(at::linear(x, q_), p_, bias_);
  }
  std::string describe() const override {
    return "low rank " + std::to_string(p_.size(1)) + ": two GEMMs " +
           std::to_string(q_.size(1)) + "->" + std::to_string(p_.size(1)) + "->" +
           std::to_string(p_.size(0));
  }

 private:
  at::Tensor p_, q_, bias_;
};

// The rank-k factors of w [out, in] (P = U_k S_k, Q = V_k^T).
std::pair<at::Tensor, at::Tensor> factors(const at::Tensor& w, int64_t k) {
  auto [u, s, vh] = at::linalg_svd(w.to(at::kFloat), /*full_matrices=*/false);
  return {(u.narrow(1, 0, k) * s.narrow(0, 0, k)).contiguous(), vh.narrow(0, 0, k).contiguous()};
}

int64_t rank_for(const at::Tensor& w, const LowRankOptions& o) {
  const int64_t full = std::min(w.size(0), w.size(1));
  if (o.rank > 0) return std::min(o.rank, full);
  auto s2 = at::linalg_svdvals(w.to(at::kFloat)).pow(2).to(at::kDouble);
  auto cum = s2.cumsum(0) / s2.sum();
  // The smallest k with cum[k-1] >= energy.
  const int64_t k = cum.lt(o.energy - 1e-12).sum().item<int64_t>() + 1;
  return std::min(k, full);
}

class LowRankPass final : public CompressionPass, public RuntimeProvider {
 public:
  using CompressionPass::CompressionPass;
  void attach(models::Model& model, const StepContext& /*ctx*/) override {
    static const LowRankOptions defaults;
    layers_.clear();
    torch::NoGradGuard no_grad;
    for (const auto& t : select_layers(model)) {
      SCULPT_CHECK(dynamic_cast<nn::Linear*>(t.layer.get()), "compression pass ", name(),
                   ": layer ", t.name, " is not a Linear layer (lowrank factorizes Linear only)");
      const auto& o = t.options ? options_of<LowRankOptions>(t) : defaults;
      const auto w = t.layer->raw_weight().detach();
      const int64_t k = rank_for(w, o);
      auto [p, q] = factors(w, k);
      auto f = std::make_shared<FactorTransform>(p.to(w.device()), q.to(w.device()));
      t.layer->add_weight_transform("lowrank", f);
      t.layer->raw_weight().set_requires_grad(false);  // the factors replace it while training
      layers_.push_back({t.name, t.layer, f, w.size(0), w.size(1)});
      log::info("lowrank: ", t.name, " ", w.size(0), "x", w.size(1), " -> rank ", k);
    }
  }
  void finalize(models::Model& model, const StepContext& /*ctx*/) override {
    torch::NoGradGuard no_grad;
    for (auto& l : layers_) bake(*l.layer, "lowrank", l.f->forward(l.layer->raw_weight()));
    install_runtimes(model);
  }
  // The trained weight has rank k exactly (up to rounding): factor it again and run the two
  // thin GEMMs where they take fewer multiply-adds.
  void install_runtimes(models::Model& model) override {
    torch::NoGradGuard no_grad;
    for (const auto& t : select_layers(model)) {
      auto* lin = dynamic_cast<nn::Linear*>(t.layer.get());
      if (!lin || lin->has_transforms()) continue;
      const auto w = lin->raw_weight().detach();
      auto s = at::linalg_svdvals(w.to(at::kFloat));
      const int64_t k = s.gt(s[0] * 1e-4).sum().item<int64_t>();
      if (k * (w.size(0) + w.size(1)) >= w.size(0) * w.size(1)) {
        log::info("lowrank: ", t.name, " runs dense: rank ", k, " saves no multiply-adds");
        continue;
      }
      auto [p, q] = factors(w, k);
      auto rt = std::make_shared<FactorRuntime>(p, q, lin->bias().defined() ? lin->bias().detach()
                                                                               : at::Tensor());
      log::info("lowrank: ", t.name, " runs as ", rt->describe());
      lin->set_runtime(rt);
    }
  }
  std::string pipeline_limitation() const override { return {}; }
  nlohmann::json summary() const override {
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& l : layers_) {
      const int64_t k = l.f->rank();
      layers.push_back({{"name", l.name},
                        {"rank", k},
                        {"params", l.out * l.in},
                        {"factored_params", k * (l.out + l.in)}});
    }
    return {{"layers", layers}};
  }

 private:
  struct Layer {
    std::string name;
    std::shared_ptr<nn::Compressible> layer;
    std::shared_ptr<FactorTransform> f;
    int64_t out, in;
  };
  std::vector<Layer> layers_;
};

}  // namespace

std::unique_ptr<CompressionPass> make_lora_pass(const config::PassConfig& cfg) {
  return std::make_unique<LoraPass>(cfg);
}
std::unique_ptr<CompressionPass> make_lowrank_pass(const config::PassConfig& cfg) {
  return std::make_unique<LowRankPass>(cfg);
}

}  // namespace sculpt::compression
