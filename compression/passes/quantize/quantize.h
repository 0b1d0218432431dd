// quantize: quantization-aware training (mode qat) or post-training calibration (mode ptq) of
// the chosen layers, ending in a real integer model (<run>/quantized, see int8_model.h) that is
// checked against the fake-quant model before the run ends.
#pragma once

#include <memory>
#include <string>

#include "compression/pass.h"
#include "compression/passes/quantize/qparams.h"
#include "core/tasks/task.h"

namespace sculpt::compression {

struct QuantizeOptions : config::Section {
  std::string mode = "qat";  // qat | ptq
  bool enabled = true;       // false: the layer stays float (a rule in overrides)
  int64_t weight_bits = 8;
  std::string weight_scheme = "symmetric";       // symmetric | asymmetric
  std::string weight_granularity = "per_channel";  // per_tensor | per_channel | per_group
  int64_t weight_axis = 0;
  int64_t group_size = 0;
  std::string weight_observer = "minmax";
  int64_t act_bits = 8;  // 0: inputs stay float (weight-only)
  std::string act_scheme = "asymmetric";
  bool act_signed = true;  // symmetric activation grids: false for inputs known to be >= 0
  std::string act_observer = "moving_average";
  double observer_momentum = 0.01;
  double percentile = 99.99;
  bool lsq = false;
  bool pact = false;
  double pact_init = 6.0;
  std::string warmup = "0";
  std::string freeze_observers_at = "0";
  std::string freeze_bn_at = "0";
  int64_t calibration_batches = 16;
  bool export_model = true;
  bool verify = true;
  void visit(config::Visitor& v) override;
  void check(config::Checker& c) const override;

  quant::QSpec weight_spec() const;
  quant::QSpec act_spec() const;
};

void add_quantize(PassRegistry& r);

// `sculpt quant-sensitivity`: PTQ of one layer at a time (the others float) with the options'
// bits, calibrated on `batches` batches of `calib`; the drop of `metric` on `val` per layer.
struct LayerSensitivity {
  std::string name;
  int64_t weights = 0;  // elements of the layer's weight
  double metric = 0, drop = 0;
};
std::vector<LayerSensitivity> quant_sensitivity(models::Model& model, const tasks::Task& task,
                                                const data::Dataset& calib,
                                                const data::Dataset& val,
                                                const config::DataConfig& data,
                                                const QuantizeOptions& o, int64_t batches,
                                                const std::string& metric, c10::Device device,
                                                double& baseline);
// Bytes of the layers' weights when `eight` (by name) are at 8 bits and the rest at low_bits.
// The layers that stay at 8 bits so that the weights fit `budget_bytes` with the least summed
// drop (greedy: the least drop per byte saved goes low first); UserError when even all at
// low_bits do not fit.
std::vector<std::string> keep_at_8_bits(const std::vector<LayerSensitivity>& layers, int low_bits,
                                        int64_t budget_bytes);

}  // namespace sculpt::compression
