// The quantize pass's per-layer machinery, shared by the pass and `quant-sensitivity`: the
// weight and input fake-quant transforms, the schedule switches they read, attaching them to a
// layer and PTQ calibration. Internal to compression/passes/quantize.
#pragma once

#include <torch/nn/modules/batchnorm.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "compression/passes/quantize/observers.h"
#include "compression/passes/quantize/quantize.h"
#include "core/data/dataset.h"
#include "core/error.h"
#include "core/models/model.h"
#include "kernels/fake_quant/fake_quant.h"

namespace sculpt::compression::quantize_detail {

using quant::Granularity;
using quant::QParams;
using quant::QSpec;

quant::ObserverOptions observer_options(const QuantizeOptions& o, quant::ObserverKind kind);

// The fused CPU path (kernels::fake_quant_rows, one call for range, qparams and fake
// quantization, one or no pass backward): the number of qparam rows of x's flat layout under
// `spec`, or 0 where it does not apply (not float32 on the CPU; per channel on an axis other
// than the first).
int64_t fused_rows(const at::Tensor& x, const QSpec& spec);
// Whether `qp` can feed that path as given qparams for `rows` rows.
bool fused_qparams(const QParams& qp, int64_t rows);
// Whether `o` gives the range as min / max (the kinds the fused path derives on the fly).
inline bool min_max_kind(const quant::ObserverOptions& o) {
  return o.kind == quant::ObserverKind::minmax || o.kind == quant::ObserverKind::moving_average;
}

// What the pass switches on and off for every transform.
struct Phase {
  bool active = false;       // fake quantization on
  bool observing = false;    // observers update
  bool calibrating = false;  // ptq: observe in eval mode too
};

class QuantWeight final : public nn::WeightTransform {
 public:
  QuantWeight(QSpec spec, quant::ObserverOptions obs, bool lsq, const Phase* phase)
      : spec_(spec), obs_(obs), lsq_(lsq), phase_(phase) {}

  at::Tensor forward(const at::Tensor& w) override {
    if (!phase_->active) return w;
    at::Tensor f;  // BN fold factor, [out, 1, 1, 1]
    at::Tensor wf = w;
    if (fold_) {
      // Detached: gamma is trained by the BN's own forward (whose output this undoes the
      // scaling for); through the fold its gradient has a (w f - Q(w f)) / f^2 term that
      // explodes for small gamma (seen: NaN within 30 steps at lr 0.05 without clipping).
      f = fold_factor().reshape({-1, 1, 1, 1});
      wf = w * f;
    }
    const bool derive = !qp_.defined() || (phase_->observing && dirty_);
    const int64_t rows = lsq_ ? 0 : fused_rows(wf, spec_);
    at::Tensor y;
    if (rows > 0 && derive && min_max_kind(obs_)) {
      y = fused_refresh(wf, rows);
    } else {
      if (derive) refresh(wf);
      if (rows > 0 && fused_qparams(qp_, rows)) {
        y = kernels::fake_quant_rows(wf, rows, qp_.scale, qp_.zero_point, spec_.qmin(), spec_.qmax(),
                                     nullptr, &out_);
      } else if (lsq_) {
        const double g = 1.0 / std::sqrt(static_cast<double>(
                                   quant::elements_per_scale(wf.sizes(), spec_)) *
                               static_cast<double>(spec_.qmax()));
        y = quant::fake_quantize_lsq(wf, scale_, qp_.zero_point, spec_, g);
      } else {
        y = quant::fake_quantize(wf, qp_);
      }
    }
    return fold_ ? y / f : y;
  }

  // qparams from the current (folded) weight; LSQ scales start there.
  void refresh(const at::Tensor& wf) {
    auto [lo, hi] = quant::weight_range(wf, spec_, obs_);
    qp_ = quant::qparams_from_range(lo, hi, spec_);
    dirty_ = false;
    if (lsq_ && !scale_init_) {
      at::NoGradGuard no_grad;
      scale_.copy_(qp_.scale.reshape(scale_.sizes()));
      scale_init_ = true;
    }
  }
  // refresh() and the fake quantization in one fused call (minmax / moving_average, no LSQ).
  at::Tensor fused_refresh(const at::Tensor& wf, int64_t rows);
  void mark_dirty() { dirty_ = true; }
  // The qparams the export uses (the learned scale under LSQ).
  QParams qparams() const {
    QParams q = qp_;
    if (lsq_ && scale_init_) q.scale = scale_.detach().clone();
    return q;
  }
  void set_fold(std::shared_ptr<torch::nn::BatchNorm2dImpl> bn) { bn_ = std::move(bn); }
  bool can_fold() const { return bn_ != nullptr; }
  void fold_on() {
    if (fold_ || !bn_) return;
    fold_ = true;
    dirty_ = true;
    scale_init_ = false;  // the folded weight has another range: LSQ starts again from it
    qp_ = QParams();
  }
  bool folded() const { return fold_; }
  at::Tensor fold_factor() const {
    return fold_ ? (bn_->weight / at::sqrt(bn_->running_var + bn_->options.eps())).detach()
                 : at::Tensor();
  }
  const std::shared_ptr<torch::nn::BatchNorm2dImpl>& bn() const { return bn_; }

  QSpec spec_;
  quant::ObserverOptions obs_;
  bool lsq_;
  const Phase* phase_;
  QParams qp_;
  bool dirty_ = true, fold_ = false, scale_init_ = false;
  at::Tensor scale_ = at::zeros({}, at::kFloat).set_requires_grad(true);  // LSQ
  std::shared_ptr<torch::nn::BatchNorm2dImpl> bn_;
  c10::Storage out_;  // the fused path's output buffer, reused once free
};

class QuantInput final : public nn::ActivationTransform {
 public:
  QuantInput(QSpec spec, quant::ObserverOptions obs, bool lsq, bool pact, double pact_init,
             const Phase* phase)
      : spec_(spec), observer_(spec, obs), lsq_(lsq), pact_(pact), phase_(phase) {
    alpha_ = at::full({}, pact_init, at::kFloat).set_requires_grad(true);
  }

  at::Tensor forward(const at::Tensor& x) override {
    if (record_) recorded_ = x.detach();
    if (!phase_->active) return x;
    const bool observe = phase_->observing && (is_training() || phase_->calibrating) && !pact_;
    if (!pact_ && !lsq_ && !observer_.uses_histogram() && !observer_.distributed() &&
        fused_rows(x, spec_) == 1) {
      if (observe) return fused_observe(x);
      if (dirty_) refresh();
      SCULPT_CHECK(qp_.defined(), "quantize: an input observer has no data yet");
      if (fused_qparams(qp_, 1))
        return kernels::fake_quant_rows(x, 1, qp_.scale, qp_.zero_point, spec_.qmin(), spec_.qmax(),
                                        nullptr, &out_);
    }
    if (observe) {
      observer_.observe(x);
      dirty_ = true;
    }
    if (pact_) {
      // y = min(relu(x), alpha): d y / d alpha = 1 where x >= alpha (PACT with STE).
      const at::Tensor y = at::minimum(at::relu(x), alpha_);
      return quant::fake_quantize(y, pact_qparams());
    }
    // Histogram observers cost more to turn into a range: every 10th batch while observing.
    if (dirty_ && (!qp_.defined() || !uses_hist_ || !phase_->observing ||
                   observer_.batches() % 10 == 1))
      refresh();
    SCULPT_CHECK(qp_.defined(), "quantize: an input observer has no data yet");
    if (lsq_) {
      const double g = 1.0 / std::sqrt(static_cast<double>(x[0].numel()) *
                                       static_cast<double>(spec_.qmax()));
      return quant::fake_quantize_lsq(x, scale_, qp_.zero_point, spec_, g);
    }
    return quant::fake_quantize(x, qp_);
  }

  // observe(), refresh() and the fake quantization in one fused call.
  at::Tensor fused_observe(const at::Tensor& x);
  void refresh() {
    if (!observer_.seen()) return;
    qp_ = observer_.qparams();
    dirty_ = false;
    if (lsq_ && !scale_init_) {
      at::NoGradGuard no_grad;
      scale_.copy_(qp_.scale);
      scale_init_ = true;
    }
  }
  QParams pact_qparams() const {
    QParams q;
    q.spec = spec_;
    q.scale = (alpha_.detach().clamp_min(1e-6) / static_cast<double>(spec_.qmax()));
    q.zero_point = at::zeros({}, at::kFloat);
    return q;
  }
  QParams qparams() const {
    if (pact_) return pact_qparams();
    QParams q = qp_;
    if (q.defined() && lsq_ && scale_init_) q.scale = scale_.detach().clone();
    return q;
  }
  bool ready() const { return pact_ || qp_.defined() || observer_.seen(); }

  QSpec spec_;
  quant::ActivationObserver observer_;
  bool lsq_, pact_;
  bool uses_hist_ = false;
  const Phase* phase_;
  QParams qp_;
  bool dirty_ = false, scale_init_ = false;
  at::Tensor scale_ = at::zeros({}, at::kFloat).set_requires_grad(true);
  at::Tensor alpha_;
  bool record_ = false;
  at::Tensor recorded_;
  c10::Storage out_;  // the fused path's output buffer, reused once free
};

// A quantized layer: its transforms and what the summary reports.
struct Layer {
  std::string name;
  std::shared_ptr<nn::Compressible> layer;
  std::shared_ptr<QuantWeight> weight;
  std::shared_ptr<QuantInput> input;
  std::string spec, act_spec;
  double weight_snr = std::numeric_limits<double>::quiet_NaN();
  double act_snr = std::numeric_limits<double>::quiet_NaN();
  double scale_min = 0, scale_max = 0;
};


// Attaches the weight transform (and the input transform when act_bits > 0) to `layer`.
Layer attach_layer(const std::string& name, const std::shared_ptr<nn::Compressible>& layer,
                   const QuantizeOptions& o, const Phase* phase, c10::Device device);

// PTQ calibration: `batches` batches of `ds` (normalized as evaluation sees them) through the
// model in eval mode with every observer on; then observers off, qparams from what they saw.
int64_t calibrate_layers(models::Model& model, std::vector<Layer>& layers, Phase& phase,
                         const data::Dataset& ds, int64_t batch_size,
                         const data::LoaderOptions& loading, int64_t batches, c10::Device device);

}  // namespace sculpt::compression::quantize_detail
