#include "compression/passes/quantize/sensitivity.h"

#include <algorithm>
#include <set>

#include "compression/passes/quantize/quant_layer.h"
#include "core/config/visitors.h"
#include "core/data/loader.h"
#include "core/error.h"
#include "core/io/safetensors.h"
#include "core/models/model.h"
#include "core/run/run_context.h"
#include "core/tasks/task.h"
#include "trainers/run_parts.h"

namespace sculpt::compression {

using namespace quantize_detail;

std::vector<LayerSensitivity> quant_sensitivity(models::Model& model, const tasks::Task& task,
                                                const data::Dataset& calib,
                                                const data::Dataset& val,
                                                const config::DataConfig& data,
                                                const QuantizeOptions& o, int64_t batches,
                                                const std::string& metric, c10::Device device,
                                                double& baseline) {
  auto value = [&] {
    const auto m = trainers::evaluate(model, task, val, data, device);
    auto it = m.find(metric);
    SCULPT_CHECK(it != m.end(), "quant-sensitivity: the task has no metric '", metric, "'");
    return it->second;
  };
  // Losses and perplexities fall when the model is better; everything else rises.
  const bool lower_better =
      metric.find("loss") != std::string::npos || metric.find("perplexity") != std::string::npos;
  baseline = value();
  std::vector<LayerSensitivity> out;
  for (const auto& [name, layer] : nn::compressible_layers(model)) {
    Phase phase;
    std::vector<Layer> one{attach_layer(name, layer, o, &phase, device)};
    calibrate_layers(model, one, phase, calib, data.batch_size,
                     data::LoaderOptions::for_evaluation(data), batches, device);
    LayerSensitivity s{name, layer->raw_weight().numel(), value(), 0};
    s.drop = lower_better ? s.metric - baseline : baseline - s.metric;
    layer->clear_transforms();
    out.push_back(s);
  }
  return out;
}

std::vector<std::string> keep_at_8_bits(const std::vector<LayerSensitivity>& layers, int low_bits,
                                        int64_t budget_bytes) {
  auto bytes = [](int64_t n, int bits) { return (n * bits + 7) / 8; };
  int64_t total = 0, all_low = 0;
  for (const auto& l : layers) {
    total += bytes(l.weights, 8);
    all_low += bytes(l.weights, low_bits);
  }
  SCULPT_CHECK(all_low <= budget_bytes, "quant-sensitivity: even with every layer at ", low_bits,
               " bits the weights take ", all_low, " bytes, over the budget of ", budget_bytes);
  std::vector<const LayerSensitivity*> order;
  for (const auto& l : layers) order.push_back(&l);
  std::sort(order.begin(), order.end(), [&](const auto* a, const auto* b) {
    const double sa = static_cast<double>(bytes(a->weights, 8) - bytes(a->weights, low_bits));
    const double sb = static_cast<double>(bytes(b->weights, 8) - bytes(b->weights, low_bits));
    return std::max(a->drop, 0.0) / sa < std::max(b->drop, 0.0) / sb;
  });
  std::set<std::string> low;
  for (const auto* l : order) {
    if (total <= budget_bytes) break;
    total -= bytes(l->weights, 8) - bytes(l->weights, low_bits);
    low.insert(l->name);
  }
  std::vector<std::string> keep;
  for (const auto& l : layers)
    if (!low.count(l.name)) keep.push_back(l.name);
  return keep;
}

int64_t SensitivityReport::fp32_bytes() const {
  int64_t bytes = 0;
  for (const auto& l : layers) bytes += l.weights * 4;
  return bytes;
}

SensitivityReport measure_quant_sensitivity(const config::Config& cfg, const std::string& weights,
                                            int64_t batches, const std::string& metric) {
  SensitivityReport r;
  for (const auto& pc : cfg.compression)
    if (const auto* o = dynamic_cast<const QuantizeOptions*>(pc.options.get())) {
      r.options = *o;
      break;
    }
  const auto device = resolve_device(cfg.run.device);
  auto parts = trainers::build_run_parts(cfg, device);
  parts.model->load_state_tensors(io::load_safetensors(weights), weights);
  r.metric = metric.empty() ? cfg.trainer.best_metric : metric;
  r.layers = quant_sensitivity(*parts.model, *parts.task, parts.split.train, parts.split.val,
                               cfg.data, r.options, batches, r.metric, device, r.baseline);
  return r;
}

std::string bit_width_rules(const SensitivityReport& report, double budget,
                            const std::string& source) {
  const auto bytes = static_cast<int64_t>(budget * static_cast<double>(report.fp32_bytes()));
  const auto bits = report.options.weight_bits;
  const auto keep = keep_at_8_bits(report.layers, static_cast<int>(bits), bytes);
  std::string rules = "# sculpt quant-sensitivity " + source + ": weights at " +
                      std::to_string(bits) + " bits except these at 8, within " +
                      config::format_double(budget) + " x the FP32 weight bytes (" +
                      std::to_string(bytes) + " bytes); paste under the quantize item\n"
                      "overrides:\n";
  for (const auto& name : keep) {
    std::string re;
    for (char ch : name) re += ch == '.' ? std::string("\\.") : std::string(1, ch);
    rules += "  - {layers: '" + re + "', weight_bits: 8}\n";
  }
  return rules;
}

}  // namespace sculpt::compression
