// quantize. Each chosen layer gets a weight transform and (act_bits > 0) an input transform
// named "quant". Schedule, in steps (or epochs, "2e"):
//   [0, warmup)                    float: the transforms pass values through
//   [warmup, freeze_observers_at)  observers update, fake quantization on
//   freeze_bn_at                   BatchNorms after quantized convs stop updating their
//                                  statistics and are folded into the conv for the quantized
//                                  forward: w -> Q(w * g / sigma) * sigma / g, then the (eval)
//                                  BN, which equals conv(x, Q(w_fold)) + b_fold exactly
//   freeze_observers_at on         qparams fixed (LSQ scales keep learning)
// mode ptq: no training; attach runs calibration_batches batches through the model, and the
// run (trainer.epochs: 0) goes straight to the export.
// finalize: exports <run>/quantized, loads it into a fresh model with the integer runtime and
// fails if its outputs differ from the fake-quant model's by more than one quantization step
// of the outputs (the output range / 255) anywhere.
// Transform state (observers, qparams, LSQ/PACT parameters) lives in the pass, not in
// registered module tensors, so model.safetensors keeps the plain float weights.
#include "compression/passes/quantize/quantize.h"

#include <torch/nn/modules/batchnorm.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <set>

#include "compression/passes/quantize/int8_model.h"
#include "compression/passes/quantize/observers.h"
#include "compression/passes/quantize/quant_layer.h"
#include "core/data/dataset.h"
#include "core/data/loader.h"
#include "core/error.h"
#include "core/logging/logging.h"
#include "core/models/model.h"
#include "core/run/run_context.h"
#include "trainers/run_parts.h"

namespace sculpt::compression {

using quant::Granularity;
using quant::QParams;
using quant::QSpec;

void QuantizeOptions::visit(config::Visitor& v) {
  v.choice("mode", mode, kQuantModes,
           "quantize: qat (fake-quant training) or ptq (calibrate, no training: trainer.epochs 0)");
  v.field("enabled", enabled, "quantize: false keeps the layer in float (use in overrides)");
  v.field("weight_bits", weight_bits, "quantize: weight bits, 2..8", config::Range::closed(2, 8));
  v.choice("weight_scheme", weight_scheme, kQuantSchemes,
           "quantize: weight grid (symmetric: narrow signed range, zero point 0)");
  v.choice("weight_granularity", weight_granularity, quant::kGranularities,
           "quantize: one weight scale per tensor, per channel (weight_axis) or per group");
  v.field("weight_axis", weight_axis, "quantize: per_channel axis of the weight (0: outputs)",
          config::Range::at_least(0));
  v.field("group_size", group_size,
          "quantize: per_group: consecutive input-dimension elements sharing a scale",
          config::Range::at_least(0));
  v.choice("weight_observer", weight_observer, quant::kObserverKinds,
           "quantize: weight range (computed from the current weights)");
  v.field("act_bits", act_bits, "quantize: input activation bits, 2..8; 0: inputs stay float",
          config::Range::closed(0, 8));
  v.choice("act_scheme", act_scheme, kQuantSchemes,
           "quantize: activation grid (asymmetric: 0..2^b-1 with a zero point)");
  v.field("act_signed", act_signed,
          "quantize: symmetric activation grids only: false uses 0..2^b-1 for inputs >= 0");
  v.choice("act_observer", act_observer, quant::kObserverKinds,
           "quantize: activation range observer (per tensor)");
  v.field("observer_momentum", observer_momentum, "quantize: moving_average weight of a batch",
          config::Range::half_open(0, 1));
  v.field("percentile", percentile, "quantize: percentile observer's p, in (0, 100]",
          config::Range::half_open(0, 100));
  v.field("lsq", lsq, "quantize: learn the step sizes (LSQ, gradient scale 1/sqrt(N*qmax))");
  v.field("pact", pact, "quantize: clip inputs at a learned alpha (PACT) on a 0..2^b-1 grid");
  v.field("pact_init", pact_init, "quantize: initial PACT alpha", config::Range::above(0));
  v.step_point("warmup", warmup, "quantize: float steps before fake quantization (500 or 2e)");
  v.step_point("freeze_observers_at", freeze_observers_at,
          "quantize: step (or 2e) from which qparams stay fixed; 0: observe to the end");
  v.step_point("freeze_bn_at", freeze_bn_at,
          "quantize: step (or 2e) from which BatchNorm statistics freeze and fold into the conv "
          "(late in training, at a low learning rate: frozen statistics of near-dead channels "
          "amplify ~300x); 0: never");
  v.field("calibration_batches", calibration_batches, "quantize: ptq: batches to calibrate on",
          config::Range::at_least(1));
  v.field("export", export_model, "quantize: write the integer model to <run>/quantized");
  v.field("verify", verify,
          "quantize: check the integer model against the fake-quant model at the end");
}

void QuantizeOptions::check(config::Checker& c) const {
  if (act_bits == 1) c.error("act_bits", "act_bits must be 0 (float) or 2..8; got 1");
  if (weight_granularity == Granularity::per_group && group_size <= 0)
    c.error("group_size", "weight_granularity per_group needs group_size > 0");
  if (weight_observer == quant::ObserverKind::entropy &&
      weight_granularity != Granularity::per_tensor)
    c.error("weight_observer", std::string("entropy calibration works per tensor only; use "
                                           "minmax, percentile or mse with ") +
                                   config::spelling(quant::kGranularities, weight_granularity));
  if (pact && act_bits == 0) c.error("pact", "pact clips quantized inputs: set act_bits");
}

QSpec QuantizeOptions::weight_spec() const {
  QSpec s;
  s.bits = static_cast<int>(weight_bits);
  s.symmetric = weight_scheme == QuantScheme::symmetric;
  s.granularity = weight_granularity;
  s.axis = weight_axis;
  s.group_size = group_size;
  return s;
}

QSpec QuantizeOptions::act_spec() const {
  QSpec s;
  s.bits = static_cast<int>(act_bits);
  s.symmetric = pact || act_scheme == QuantScheme::symmetric;
  s.is_signed = !pact && act_signed;
  return s;
}

using namespace quantize_detail;

namespace {

class QuantizePass final : public CompressionPass {
 public:
  using CompressionPass::CompressionPass;

  void attach(models::Model& model, const StepContext& ctx) override {
    static const QuantizeOptions defaults;
    const auto& top = config().options ? dynamic_cast<const QuantizeOptions&>(*config().options)
                                       : defaults;
    mode_ = top.mode;
    warmup_ = resolve_step(top.warmup, ctx, "compression quantize: warmup");
    freeze_obs_ = resolve_step(top.freeze_observers_at, ctx, "compression quantize: freeze_observers_at");
    freeze_bn_ = resolve_step(top.freeze_bn_at, ctx, "compression quantize: freeze_bn_at");
    verify_ = top.verify;
    export_ = top.export_model;
    SCULPT_CHECK(mode_ != QuantMode::qat || ctx.total_steps > 0,
                 "compression quantize: mode qat needs training steps; for calibration without "
                 "training use mode: ptq");
    SCULPT_CHECK(freeze_obs_ == 0 || freeze_obs_ > warmup_,
                 "compression quantize: freeze_observers_at (step ", freeze_obs_,
                 ") must come after warmup (step ", warmup_, "): observers would see no data");
    SCULPT_CHECK(mode_ != QuantMode::ptq || ctx.total_steps == 0,
                 "compression quantize: mode ptq calibrates without training, but the trainer "
                 "will make ", ctx.total_steps, " steps: set trainer.epochs: 0 (or use mode: qat)");
    std::map<std::string, std::shared_ptr<torch::nn::BatchNorm2dImpl>> norms;
    {
      std::map<std::string, std::shared_ptr<torch::nn::Module>> mods;
      for (const auto& item : model.named_modules("", false)) mods[item.key()] = item.value();
      for (const auto& [layer, norm] : model.norm_pairs())
        if (auto bn = std::dynamic_pointer_cast<torch::nn::BatchNorm2dImpl>(mods[norm]))
          norms[layer] = bn;
    }
    layers_.clear();
    for (const auto& t : select_layers(model)) {
      const auto& o = t.options ? options_of<QuantizeOptions>(t) : defaults;
      if (!o.enabled) continue;
      Layer l = attach_layer(t.name, t.layer, o, &phase_, ctx.device);
      if (l.input) l.input->observer_.set_collectives(ctx.collectives);
      if (norms.count(t.name) && !top.freeze_bn_at.is_zero()) l.weight->set_fold(norms[t.name]);
      layers_.push_back(std::move(l));
    }
    if (mode_ == QuantMode::ptq) calibrate(model, ctx, top.calibration_batches);
    set_phase(0);
  }

  std::vector<at::Tensor> parameters() const override {
    std::vector<at::Tensor> out;
    for (const auto& l : layers_) {
      if (l.weight->lsq_) out.push_back(l.weight->scale_);
      if (l.input && l.input->lsq_ && !l.input->pact_) out.push_back(l.input->scale_);
      if (l.input && l.input->pact_) out.push_back(l.input->alpha_);
    }
    return out;
  }

  void on_batch(data::Batch& /*batch*/, const StepContext& ctx) override {
    set_phase(ctx.step);
    if (freeze_bn_ > 0 && ctx.step >= freeze_bn_) {
      for (auto& l : layers_) {
        if (!l.weight->can_fold()) continue;
        l.weight->bn()->eval();
        if (!l.weight->folded()) {
          l.weight->fold_on();
          log::info("quantize: ", l.name, " BatchNorm frozen and folded from step ", ctx.step + 1);
        }
      }
    }
  }

  void after_step(models::Model& /*model*/, const StepContext& ctx) override {
    steps_ = ctx.step;
    for (auto& l : layers_) l.weight->mark_dirty();
  }

  void finalize(models::Model& model, const StepContext& ctx) override {
    phase_.observing = false;
    phase_.active = true;
    for (auto& l : layers_)
      SCULPT_CHECK(!l.input || l.input->ready(), "compression quantize: layer ", l.name,
                   ": exporting before its input observer has seen data (warmup longer than the "
                   "run? mode ptq with no calibration batches?)");
    for (auto& l : layers_)
      if (l.input) l.input->refresh();
    // Weight qparams from the final weights (LSQ scales are learned, not observed).
    for (auto& l : layers_)
      if (!l.weight->lsq_ && (l.weight->dirty_ || !l.weight->qp_.defined())) {
        l.weight->mark_dirty();
        l.weight->qp_ = QParams();
      }
    sample_ = first_batch(ctx);
    at::Tensor sample = sample_.defined() ? sample_.to(ctx.device) : at::Tensor();
    // Activation SNR from the sample batch through the fake-quant model.
    if (sample.defined()) {
      at::NoGradGuard no_grad;
      model.eval();
      for (auto& l : layers_)
        if (l.input) l.input->record_ = true;
      reference_ = model.forward(sample).detach();
      for (auto& l : layers_)
        if (l.input) {
          l.input->record_ = false;
          l.act_snr = quant::quantization_snr_db(l.input->recorded_, l.input->qparams());
          l.input->recorded_ = at::Tensor();
        }
    }
    std::vector<quant::ExportLayer> ex;
    fp32_bytes_ = quant::fp32_bytes(model);
    for (auto& l : layers_) {
      at::NoGradGuard no_grad;
      quant::ExportLayer e;
      e.name = l.name;
      e.layer = l.layer;
      at::Tensor w = l.layer->raw_weight().detach();
      at::Tensor bias = l.layer->bias().defined() ? l.layer->bias().detach() : at::Tensor();
      if (l.weight->folded()) {
        std::tie(w, bias) = quant::fold_batchnorm(w, bias, *l.weight->bn());
        e.folded_norm = norm_name(model, l.weight->bn());
      }
      if (!l.weight->qp_.defined()) l.weight->refresh(w);
      e.weight = l.weight->qparams();
      e.folded_weight = w;
      e.bias = bias;
      if (l.input) e.act = l.input->qparams();
      l.weight_snr = quant::quantization_snr_db(w, e.weight);
      l.scale_min = e.weight.scale.min().item<double>();
      l.scale_max = e.weight.scale.max().item<double>();
      l.spec = e.weight.spec.describe();
      if (e.act.defined()) l.act_spec = e.act.spec.describe();
      ex.push_back(std::move(e));
    }
    if (!export_ || !ctx.run || !ctx.run->writes_files()) return;  // rank 0 writes files
    const std::string dir = (ctx.run->dir() / "quantized").string();
    const auto manifest = quant::export_quantized(model, ex, dir);
    export_bytes_ = manifest.at("bytes").get<int64_t>();
    export_dir_ = dir;
    log::info("quantize: integer model in ", dir, ": ", export_bytes_, " bytes (FP32 ",
              fp32_bytes_, ", ", static_cast<double>(export_bytes_) / static_cast<double>(fp32_bytes_),
              "x)");
    if (verify_ && sample.defined() && ctx.data) verify(ctx, dir);
  }

  CallbackState state_dict() const override {
    CallbackState s;
    s.meta["step"] = steps_;
    for (const auto& l : layers_) {
      auto& m = s.meta["layers"][l.name];
      m["folded"] = l.weight->folded();
      if (l.weight->lsq_) {
        m["lsq_init"] = l.weight->scale_init_;
        s.tensors.emplace_back(l.name + ".w_lsq_scale", l.weight->scale_.detach());
      }
      if (l.input) {
        m["act_batches"] = l.input->observer_.batches();
        l.input->observer_.save(s.tensors, l.name + ".act_observer");
        if (l.input->qp_.defined()) {
          s.tensors.emplace_back(l.name + ".act_scale", l.input->qp_.scale);
          s.tensors.emplace_back(l.name + ".act_zero_point", l.input->qp_.zero_point);
        }
        if (l.input->lsq_) {
          m["act_lsq_init"] = l.input->scale_init_;
          s.tensors.emplace_back(l.name + ".a_lsq_scale", l.input->scale_.detach());
        }
        if (l.input->pact_) s.tensors.emplace_back(l.name + ".pact_alpha", l.input->alpha_.detach());
      }
      if (l.weight->qp_.defined()) {
        s.tensors.emplace_back(l.name + ".w_scale", l.weight->qp_.scale);
        s.tensors.emplace_back(l.name + ".w_zero_point", l.weight->qp_.zero_point);
      }
    }
    return s;
  }

  void load_state_dict(const CallbackState& state) override {
    SCULPT_CHECK(state.meta.contains("step"), "compression quantize: the saved state has no step");
    steps_ = state.meta["step"].get<int64_t>();
    std::map<std::string, at::Tensor> t(state.tensors.begin(), state.tensors.end());
    auto copy_into = [&](at::Tensor& dst, const std::string& key) {
      at::NoGradGuard no_grad;
      auto it = t.find(key);
      SCULPT_CHECK(it != t.end(), "compression quantize: the saved state has no ", key);
      SCULPT_CHECK(dst.sizes() == it->second.sizes(), "compression quantize: saved ", key,
                   " has shape ", it->second.sizes(), ", expected ", dst.sizes());
      dst.copy_(it->second);
    };
    for (auto& l : layers_) {
      SCULPT_CHECK(state.meta.contains("layers") && state.meta["layers"].contains(l.name),
                   "compression quantize: the saved state has no layer ", l.name);
      const auto& m = state.meta["layers"][l.name];
      if (m.value("folded", false)) l.weight->fold_on();
      if (t.count(l.name + ".w_scale")) {
        l.weight->qp_.spec = l.weight->spec_;
        l.weight->qp_.scale = t[l.name + ".w_scale"].clone();
        l.weight->qp_.zero_point = t[l.name + ".w_zero_point"].clone();
        l.weight->dirty_ = true;  // while observing, recomputed from the restored weights
      }
      if (l.weight->lsq_) {
        copy_into(l.weight->scale_, l.name + ".w_lsq_scale");
        l.weight->scale_init_ = m.value("lsq_init", false);
      }
      if (!l.input) continue;
      l.input->observer_.load(t, l.name + ".act_observer", m.value("act_batches", int64_t{0}));
      if (t.count(l.name + ".act_scale")) {
        l.input->qp_.spec = l.input->spec_;
        l.input->qp_.scale = t[l.name + ".act_scale"].clone();
        l.input->qp_.zero_point = t[l.name + ".act_zero_point"].clone();
      }
      if (l.input->lsq_) {
        copy_into(l.input->scale_, l.name + ".a_lsq_scale");
        l.input->scale_init_ = m.value("act_lsq_init", false);
      }
      if (l.input->pact_) copy_into(l.input->alpha_, l.name + ".pact_alpha");
    }
  }

  std::string pipeline_limitation() const override {
    if (mode_ == QuantMode::ptq)
      return "mode ptq calibrates in attach by running training batches through the whole "
             "model; missing piece: a calibration forward through the stages (a stage's "
             "observers need the earlier stages' activations of every calibration batch)";
    return {};
  }
  nlohmann::json summary() const override {
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& l : layers_) {
      nlohmann::json j = {{"name", l.name},
                          {"weight", l.spec},
                          {"act", l.act_spec.empty() ? "float" : l.act_spec},
                          {"scale_min", l.scale_min},
                          {"scale_max", l.scale_max},
                          {"weight_snr_db", finite_or_null(l.weight_snr)},
                          {"act_snr_db", finite_or_null(l.act_snr)},
                          {"bn_folded", l.weight->folded()}};
      layers.push_back(j);
    }
    nlohmann::json s = {{"mode", config::spelling(kQuantModes, mode_)}, {"layers", layers}, {"steps", steps_},
                        {"fp32_bytes", fp32_bytes_}};
    if (export_bytes_ > 0) {
      s["export_dir"] = export_dir_;
      s["quantized_bytes"] = export_bytes_;
      s["size_ratio"] = static_cast<double>(export_bytes_) / static_cast<double>(fp32_bytes_);
    }
    if (verified_) s["verify_max_abs_diff"] = verify_diff_, s["verify_tolerance"] = verify_tol_;
    return s;
  }

  std::string describe(const Target& t) const override {
    static const QuantizeOptions defaults;
    const auto& o = t.options ? dynamic_cast<const QuantizeOptions&>(*t.options) : defaults;
    if (!o.enabled) return "float (enabled: false)";
    return "weights " + o.weight_spec().describe() + " (" + quant::observer_name(o.weight_observer) +
           "), inputs " +
           (o.act_bits ? o.act_spec().describe() + " (" +
                             (o.pact ? "pact" : quant::observer_name(o.act_observer)) + ")"
                       : std::string("float")) +
           (o.lsq ? ", lsq" : "");
  }

 private:
  static nlohmann::json finite_or_null(double v) {
    if (std::isnan(v)) return nullptr;
    if (std::isinf(v)) return 999.0;  // exact
    return v;
  }

  static std::string norm_name(models::Model& model,
                               const std::shared_ptr<torch::nn::BatchNorm2dImpl>& bn) {
    for (const auto& item : model.named_modules("", false))
      if (item.value().get() == bn.get()) return item.key();
    return "";
  }

  void set_phase(int64_t step) {
    if (mode_ == QuantMode::ptq) {
      phase_.active = true;
      phase_.observing = false;
      return;
    }
    phase_.active = step >= warmup_;
    phase_.observing = phase_.active && (freeze_obs_ == 0 || step < freeze_obs_);
  }

  // One batch of training inputs as the trainer's evaluation sees them (normalized).
  static at::Tensor first_batch(const StepContext& ctx) {
    if (!ctx.train || !ctx.run) return {};
    data::Loader loader(*ctx.train, std::min<int64_t>(ctx.batch_size, 256), ctx.eval_loading);
    data::Batch b;
    return loader.next(b) ? b.inputs : at::Tensor();
  }

  void calibrate(models::Model& model, const StepContext& ctx, int64_t batches) {
    SCULPT_CHECK(ctx.train && ctx.run, "compression quantize: ptq needs the training split");
    const int64_t n = calibrate_layers(model, layers_, phase_, *ctx.train, ctx.batch_size,
                                       ctx.eval_loading, batches, ctx.device);
    log::info("quantize: calibrated on ", n, " batches");
  }

  void verify(const StepContext& ctx, const std::string& dir) {
    SCULPT_CHECK(ctx.new_model, "compression quantize: verify needs a run (to build the model)");
    auto fresh = ctx.new_model();
    quant::load_quantized(*fresh, dir);
    fresh->eval();
    at::NoGradGuard no_grad;
    const at::Tensor out = fresh->forward(sample_.cpu()).to(at::kFloat);
    const at::Tensor ref = reference_.cpu().to(at::kFloat);
    verify_tol_ = (ref.max() - ref.min()).item<double>() / 255.0;
    verify_diff_ = (out - ref).abs().max().item<double>();
    verified_ = true;
    SCULPT_CHECK(verify_diff_ <= verify_tol_, "compression quantize: export verifier: the integer "
                 "model in ", dir, " differs from the fake-quant model by ", verify_diff_,
                 " (more than one output quantization step, ", verify_tol_, ")");
    log::info("quantize: export verified: max |int8 - fake-quant| = ", verify_diff_,
              " <= one output step ", verify_tol_);
  }

  Phase phase_;
  std::vector<Layer> layers_;
  QuantMode mode_ = QuantMode::qat;
  int64_t warmup_ = 0, freeze_obs_ = 0, freeze_bn_ = 0, steps_ = 0;
  bool verify_ = true, export_ = true, verified_ = false;
  at::Tensor sample_, reference_;
  int64_t fp32_bytes_ = 0, export_bytes_ = 0;
  std::string export_dir_;
  double verify_diff_ = 0, verify_tol_ = 0;
};

}  // namespace

std::unique_ptr<CompressionPass> make_quantize_pass(const config::PassConfig& cfg) {
  return std::make_unique<QuantizePass>(cfg);
}

}  // namespace sculpt::compression
