// lora and lowrank. Both are weight transforms whose parameters live in the layer (so the
// checkpoint carries them with the model and a resume is exact) and are baked into the raw
// weight at finalize. LoRA's dropout acts on the entries of A while training (the adapter is a
// weight transform, so it never sees the layer's input; the paper drops the input of the
// adapter branch instead) — a documented difference.
#include "compression/passes/lowrank/lowrank.h"

#include <torch/torch.h>

#include <cmath>
#include <regex>
#include <set>

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
  v.field("freeze_base", freeze_base,
          "lora: train only the adapters (and what bias / modules_to_save name); every other "
          "parameter of the model is frozen, as in PEFT. false: nothing is frozen");
  v.choice("bias", bias, kLoraBiases,
           "lora: biases that train beside the adapters when freeze_base: none, all, or "
           "lora_only (the adapted layers')");
  v.field("modules_to_save", modules_to_save,
          "lora: module-name regexes (whole name, e.g. 'head\\.fc' or '.*\\.ln.*') whose "
          "parameters train in full when freeze_base");
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
    const auto& all =
        config().options ? dynamic_cast<const LoraOptions&>(*config().options) : defaults;
    layers_.clear();
    frozen_.clear();
    refuse_after_prune(model);
    for (const auto& t : select_layers(model)) {
      const auto& o = t.options ? options_of<LoraOptions>(t) : defaults;
      const auto w = as_matrix(t.layer->raw_weight());
      auto lora = std::make_shared<LoraTransform>(w.size(0), w.size(1), o);
      lora->to(t.layer->raw_weight().device());
      t.layer->add_weight_transform("lora", lora);
      if (o.freeze_base && !all.freeze_base) freeze(t.layer->raw_weight());
      layers_.push_back({t.name, t.layer, lora, o, w.size(0), w.size(1)});
    }
    if (all.freeze_base) freeze_base(model, all);
  }
  void finalize(models::Model& /*model*/, const StepContext& /*ctx*/) override {
    torch::NoGradGuard no_grad;
    for (auto& l : layers_) {
      const auto& w = l.layer->raw_weight();
      SCULPT_CHECK(as_matrix(w).size(0) == l.out && as_matrix(w).size(1) == l.in,
                   "compression pass ", name(), ": layer ", l.name, " was resized to ", w.sizes(),
                   " after its adapter was made for ", l.out, "x", l.in,
                   " (a pass before lora removed channels); list lora first in compression:");
      bake(*l.layer, "lora", w + l.lora->delta(w));
      merged_ = true;
    }
    // The model leaves fit() trainable, as it came in.
    for (auto& p : frozen_) p.set_requires_grad(true);
    frozen_.clear();
  }
  std::string pipeline_limitation() const override { return {}; }
  nlohmann::json summary() const override {
    nlohmann::json layers = nlohmann::json::array();
    int64_t adapters = 0, frozen = 0;
    for (const auto& p : frozen_) frozen += p.numel();
    for (const auto& l : layers_) {
      layers.push_back({{"name", l.name},
                        {"rank", l.o.rank},
                        {"alpha", l.o.alpha},
                        {"adapter_params", l.lora->params()},
                        {"base_params", l.layer->raw_weight().numel()},
                        {"frozen_base", l.o.freeze_base}});
      adapters += l.lora->params();
    }
    return {{"layers", layers},
            {"adapter_params", adapters},
            {"frozen_params", frozen},
            {"trained_besides", trained_besides_},
            {"merged", merged_}};
  }

 private:
  struct Layer {
    std::string name;
    std::shared_ptr<nn::Compressible> layer;
    std::shared_ptr<LoraTransform> lora;
    LoraOptions o;
    int64_t out = 0, in = 0;  // the weight's matrix shape the adapter was made for
  };

  void freeze(const at::Tensor& p) {
    if (!p.requires_grad()) return;
    p.set_requires_grad(false);
    frozen_.push_back(p);
  }

  // A prune pass listed before lora has attached its masks: B A would then be added after the
  // mask (pruned weights would not stay zero), and channels it removes in finalize would no
  // longer fit the adapters. Listed after lora, prune masks W + B A and lora merges first.
  void refuse_after_prune(models::Model& model) const {
    for (const auto& [n, layer] : nn::compressible_layers(model))
      for (const auto& t : layer->weight_transform_names())
        SCULPT_CHECK(t != "prune", "compression pass ", name(), ": a prune pass is listed before "
                     "it (layer ", n, " carries prune's mask): the adapters' B A would be added "
                     "after the mask, so pruned weights would not stay zero and removed channels "
                     "would not fit the adapters\nHINT: list lora before prune in compression:");
  }

  // PEFT's default: every parameter of the model but the adapters (and other passes' transform
  // parameters, which their passes own) stops training, except the biases `bias` names and the
  // modules `modules_to_save` matches. Before the optimizer is built, so it leaves them out.
  void freeze_base(models::Model& model, const LoraOptions& o) {
    std::vector<std::regex> keep;
    std::vector<bool> used(o.modules_to_save.size(), false);
    for (const auto& pattern : o.modules_to_save) {
      try {
        keep.emplace_back(pattern, std::regex::ECMAScript);
      } catch (const std::regex_error& e) {
        throw UserError("compression pass " + name() + ": modules_to_save: '" + pattern +
                        "' is not a valid regex (" + e.what() + ")");
      }
    }
    std::set<std::string> adapted, own_weight;  // layers with an adapter; weights that train
    for (const auto& l : layers_) {
      adapted.insert(l.name);
      if (!l.o.freeze_base) own_weight.insert(l.name + ".weight");
    }
    trained_besides_ = nlohmann::json::array();
    for (const auto& item : model.named_parameters(/*recurse=*/true)) {
      const std::string& pname = item.key();
      if (pname.find(".wt_") != std::string::npos || pname.find(".at_") != std::string::npos ||
          pname.rfind("wt_", 0) == 0 || pname.rfind("at_", 0) == 0)
        continue;  // a weight or input transform's own parameter (adapters, quantizer scales)
      const auto dot = pname.rfind('.');
      const std::string owner = dot == std::string::npos ? "" : pname.substr(0, dot);
      const std::string leaf = pname.substr(dot == std::string::npos ? 0 : dot + 1);
      bool trains = own_weight.count(pname) > 0;
      if (leaf == "bias")
        trains |=
            o.bias == LoraBias::all || (o.bias == LoraBias::lora_only && adapted.count(owner));
      // An enclosing module (or the parameter itself) matched by modules_to_save.
      for (size_t k = 0; k < keep.size(); ++k)
        for (size_t at = pname.find('.');; at = pname.find('.', at + 1)) {
          if (std::regex_match(pname.substr(0, at), keep[k])) {
            trains = used[k] = true;
            break;
          }
          if (at == std::string::npos) break;
        }
      if (trains)
        trained_besides_.push_back(pname);
      else
        freeze(item.value());
    }
    for (size_t k = 0; k < keep.size(); ++k)
      SCULPT_CHECK(used[k], "compression pass ", name(), ": modules_to_save: '",
                   o.modules_to_save[k], "' matches no module of the model");
  }

  std::vector<Layer> layers_;
  std::vector<at::Tensor> frozen_;  // parameters this pass froze (trainable again at finalize)
  nlohmann::json trained_besides_ = nlohmann::json::array();
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
