// Observers: the clipping range [lo, hi] a quantizer covers, from the values it has seen.
//   minmax          the extremes seen (weights: of the current tensor)
//   moving_average  lo/hi <- (1 - c) lo/hi + c * batch lo/hi (activations; weights: as minmax)
//   percentile      the p-th percentile of |x| (symmetric) or the (1-p, p) percentiles
//   mse             the clipping that minimizes E[(x - Q(x))^2] over a grid of candidates
//   entropy         TensorRT's KL calibration: the threshold whose quantized histogram is
//                   closest in KL divergence to the observed one (per tensor only)
// Weights are observed whole (every granularity); activations accumulate per tensor — the
// histogram kinds keep a 2048-bin histogram whose range grows with the data.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <utility>

#include "compression/passes/quantize/qparams.h"
#include "core/io/safetensors.h"
#include "core/run/collectives.h"

namespace sculpt::quant {

enum class ObserverKind { minmax, moving_average, percentile, mse, entropy };
inline const config::Spellings<ObserverKind> kObserverKinds = {
    {ObserverKind::minmax, "minmax"},         {ObserverKind::moving_average, "moving_average"},
    {ObserverKind::percentile, "percentile"}, {ObserverKind::mse, "mse"},
    {ObserverKind::entropy, "entropy"}};
ObserverKind observer_kind(const std::string& name);  // UserError on an unknown name
const char* observer_name(ObserverKind k);
// Whether the observer keeps a histogram of what it saw (percentile, mse, entropy).
bool uses_histogram(ObserverKind k);

struct ObserverOptions {
  ObserverKind kind = ObserverKind::minmax;
  double momentum = 0.01;      // moving_average
  double percentile = 99.99;   // percentile, in (0, 100]
};

// [lo, hi] of a weight tensor for `spec` (qparam_shape tensors).
std::pair<at::Tensor, at::Tensor> weight_range(const at::Tensor& w, const QSpec& spec,
                                               const ObserverOptions& o);

// Per-tensor observer of a stream of activations.
class ActivationObserver {
 public:
  ActivationObserver(QSpec spec, ObserverOptions o) : spec_(spec), o_(o) {}
  void observe(const at::Tensor& x);
  // minmax / moving_average only: one batch's range, already reduced (and all-reduced).
  void observe_range(float lo, float hi);
  // minmax / moving_average only: qparams() as two floats, without tensors.
  void host_qparams(float& scale, float& zero_point) const;
  bool uses_histogram() const;
  // Data-parallel runs: every batch's range (and histogram counts) is all-reduced, so each
  // rank's observer holds what one process would hold with the global batch.
  void set_collectives(Collectives* comm) { comm_ = comm && comm->distributed() ? comm : nullptr; }
  bool distributed() const { return comm_ != nullptr; }
  bool seen() const { return batches_ > 0; }
  int64_t batches() const { return batches_; }
  std::pair<at::Tensor, at::Tensor> range() const;  // UserError before any data
  QParams qparams() const;
  // Checkpoint state under `prefix` (tensors) and the batch count.
  void save(io::NamedTensors& out, const std::string& prefix) const;
  void load(const std::map<std::string, at::Tensor>& in, const std::string& prefix,
            int64_t batches);

 private:
  void add_to_histogram(const at::Tensor& x, double lo, double hi);
  QSpec spec_;
  ObserverOptions o_;
  int64_t batches_ = 0;
  at::Tensor lo_, hi_;  // histogram kinds: the histogram's range
  float lo_f_ = 0, hi_f_ = 0;  // minmax / moving_average: the running range
  at::Tensor hist_;     // 2048 bins over [lo_, hi_] (histogram kinds)
  Collectives* comm_ = nullptr;
};

// The range the histogram observers choose, exposed for tests: counts over equal bins of
// [lo, hi].
std::pair<double, double> histogram_range(const at::Tensor& counts, double lo, double hi,
                                          const QSpec& spec, const ObserverOptions& o);

}  // namespace sculpt::quant
