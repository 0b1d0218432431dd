// quantize: quantization-aware training (mode qat) or post-training calibration (mode ptq) of
// the chosen layers, ending in a real integer model (<run>/quantized, see int8_model.h) that is
// checked against the fake-quant model before the run ends.
#pragma once

#include <memory>
#include <string>

#include "compression/pass.h"
#include "compression/passes/quantize/observers.h"
#include "compression/passes/quantize/qparams.h"
#include "core/tasks/task.h"

namespace sculpt::compression {

enum class QuantMode { qat, ptq };
inline const config::Spellings<QuantMode> kQuantModes = {{QuantMode::qat, "qat"},
                                                         {QuantMode::ptq, "ptq"}};
enum class QuantScheme { symmetric, asymmetric };
inline const config::Spellings<QuantScheme> kQuantSchemes = {
    {QuantScheme::symmetric, "symmetric"}, {QuantScheme::asymmetric, "asymmetric"}};

struct QuantizeOptions : config::Section {
  QuantMode mode = QuantMode::qat;  // qat | ptq
  bool enabled = true;       // false: the layer stays float (a rule in overrides)
  int64_t weight_bits = 8;
  QuantScheme weight_scheme = QuantScheme::symmetric;  // symmetric | asymmetric
  quant::Granularity weight_granularity = quant::Granularity::per_channel;  // per_tensor | ...
  int64_t weight_axis = 0;
  int64_t group_size = 0;
  quant::ObserverKind weight_observer = quant::ObserverKind::minmax;
  int64_t act_bits = 8;  // 0: inputs stay float (weight-only)
  QuantScheme act_scheme = QuantScheme::asymmetric;
  bool act_signed = true;  // symmetric activation grids: false for inputs known to be >= 0
  quant::ObserverKind act_observer = quant::ObserverKind::moving_average;
  double observer_momentum = 0.01;
  double percentile = 99.99;
  bool lsq = false;
  bool pact = false;
  double pact_init = 6.0;
  config::StepPoint warmup;               // float steps before fake quantization
  config::StepPoint freeze_observers_at;  // qparams fixed from here; 0: observe to the end
  config::StepPoint freeze_bn_at;         // BatchNorms freeze and fold from here; 0: never
  int64_t calibration_batches = 16;
  bool export_model = true;
  bool verify = true;
  void visit(config::Visitor& v) override;
  void check(config::Checker& c) const override;

  quant::QSpec weight_spec() const;
  quant::QSpec act_spec() const;
};

std::unique_ptr<CompressionPass> make_quantize_pass(const config::PassConfig& cfg);

}  // namespace sculpt::compression
