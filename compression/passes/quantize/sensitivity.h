// `sculpt quant-sensitivity`: how much each layer alone loses when quantized (PTQ, the others
// float), and the per-layer bit widths that fit a size budget with the least loss. The CLI only
// parses the arguments and prints what these return.
#pragma once

#include <string>
#include <vector>

#include "compression/passes/quantize/quantize.h"

namespace sculpt::tasks {
class Task;
}

namespace sculpt::compression {

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

// What `sculpt quant-sensitivity` measures for a run: the options of its first quantize pass
// (defaults when it has none), the metric and its float value, and every layer's drop.
struct SensitivityReport {
  QuantizeOptions options;
  std::string metric;
  double baseline = 0;  // the metric of the float model
  std::vector<LayerSensitivity> layers;
  int64_t fp32_bytes() const;  // the layers' weights in FP32
};
// Loads `weights` into the run's model and measures every layer on `batches` calibration
// batches; `metric` empty: trainer.best_metric.
SensitivityReport measure_quant_sensitivity(const config::Config& cfg, const std::string& weights,
                                            int64_t batches, const std::string& metric);
// The `overrides:` that keep layers at 8 bits (the rest at the options' weight_bits) within
// `budget` x the FP32 weight bytes, as YAML to paste under the quantize item (`source`: the
// config's path, named in the header line).
std::string bit_width_rules(const SensitivityReport& report, double budget,
                            const std::string& source);

}  // namespace sculpt::compression
