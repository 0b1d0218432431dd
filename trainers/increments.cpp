#include "trainers/increments.h"

#include <torch/torch.h>

#include <cmath>

#include "core/config/visitors.h"
#include "core/error.h"
#include "core/tasks/wilson.h"

namespace sculpt::trainers {

namespace {

constexpr double kMasked = -1e9;  // logit of classes outside the task (task-incremental)

// The increment's transform of `ds`: the pixel permutation, then the class filter.
data::Dataset transform(const data::Dataset& ds, const config::IncrementConfig& inc) {
  at::Tensor inputs = ds.inputs(), targets = ds.targets();
  if (inc.permute_pixels.seed >= 0) {
    auto gen =
        at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(inc.permute_pixels.seed));
    const auto shape = inputs.sizes().vec();
    auto flat = inputs.reshape({inputs.size(0), -1});
    auto perm = at::randperm(flat.size(1), gen, at::TensorOptions().dtype(at::kLong));
    inputs = flat.index_select(1, perm).reshape(shape).contiguous();
  }
  data::Dataset out(inputs, targets, ds.spec());
  if (inc.classes.empty()) return out;
  auto keep = at::isin(targets, at::tensor(inc.classes, at::kLong));
  return out.subset(keep.nonzero().flatten());
}

}  // namespace

bool is_proportion(const std::string& metric) {
  return metric.rfind("hits@", 0) == 0 || metric == "accuracy" || metric == "exact_match";
}

nlohmann::json slice_json(const std::string& name, double value, int64_t n,
                          const std::string& metric) {
  nlohmann::json s = {{"name", name}, {"value", value}, {"n", n}};
  if (is_proportion(metric) && std::isfinite(value)) {
    const auto [lo, hi] = tasks::wilson_interval(value, static_cast<double>(n));
    s["lo"] = lo;
    s["hi"] = hi;
  }
  return s;
}

config::DataConfig increment_data(const config::Config& c, int64_t i) {
  const auto& spec = c.increments[size_t(i)];
  config::DataConfig d = c.data;
  if (!spec.data.name.empty()) {
    d.name = spec.data.name;
    d.options = spec.data.options;
  }
  return d;
}

Increment make_increment(const config::Config& c, const RunParts& parts, int64_t i) {
  const auto& spec = c.increments[i];
  Increment inc;
  inc.name = spec.name.empty() ? "increment " + std::to_string(i) : spec.name;
  inc.spec = config::dump_yaml(const_cast<config::IncrementConfig&>(spec));
  inc.data = increment_data(c, i);
  const data::Dataset* base = parts.test.get();
  std::unique_ptr<data::Dataset> other;
  const std::string where = "increments[" + std::to_string(i) + "]";
  if (!spec.data.name.empty()) {
    other = data::dataset_registry().create(inc.data.name, inc.data, data::DataPart::test);
    base = other.get();
  }
  const auto& model_spec = parts.all->spec();
  const bool use_test = c.incremental.eval_on == config::EvalOn::test ||
                        (c.incremental.eval_on == config::EvalOn::automatic && base != nullptr);
  SCULPT_CHECK(!use_test || base, c.source_file, ": ", where,
               ": incremental.eval_on=test, but the dataset has no test part");
  if (use_test) {
    inc.eval = std::make_unique<data::Dataset>(transform(*base, spec));
  } else {
    inc.eval = std::make_unique<data::Dataset>(increment_split(c, parts, i).val);
    SCULPT_CHECK(inc.eval->size() > 0, c.source_file, ": ", where,
                 ": nothing to evaluate on: the dataset has no test part and "
                 "data.val_fraction is 0");
  }
  SCULPT_CHECK(inc.eval->spec().input_shape == model_spec.input_shape, c.source_file, ": ", where,
               ": its samples have another shape than the run's data");
  for (int64_t cls : spec.classes)
    SCULPT_CHECK(cls < model_spec.num_classes, c.source_file, ": ", where, ".classes: ", cls,
                 " is not a class of the data (", model_spec.num_classes, " classes)");
  // A retrieval increment with its own corpus (gr_*: other `updates`, removed_docs, ...):
  // decoding constrained to that corpus's ID trie, not the run data's. The run's task decodes
  // only the IDs of `data:`'s corpus: documents of an update that corpus does not have (e.g.
  // `data:` with the default updates: 1 and increments with updates: 3) would never be
  // emitted, so their hits@k would be exactly 0; and a removed document's ID must never be.
  // The same corpus (one trie, built once) keeps the run's task.
  const auto& trie = inc.eval->spec().valid_targets;
  if (trie && trie != parts.all->spec().valid_targets)
    inc.task = tasks::task_registry().create(c.task.name, c.task, inc.eval->spec());
  if (c.incremental.scenario == config::Scenario::task_incremental) {
    inc.mask = at::zeros({model_spec.num_classes}, at::kBool);
    for (int64_t cls : spec.classes) inc.mask[cls] = true;
  }
  return inc;
}

data::Split increment_split(const config::Config& c, const RunParts& parts, int64_t i) {
  const auto& spec = c.increments[i];
  if (spec.data.name.empty())
    return data::split_dataset(transform(*parts.all, spec), c.data.val_fraction, c.data.split_seed);
  const auto d = increment_data(c, i);
  auto all = data::dataset_registry().create(d.name, d, data::DataPart::train);
  return data::split_dataset(transform(*all, spec), c.data.val_fraction, c.data.split_seed);
}

std::function<at::Tensor(const at::Tensor&)> increment_output_map(const Increment& inc) {
  if (!inc.mask.defined()) return {};
  const at::Tensor keep = inc.mask;
  return [keep](const at::Tensor& out) { return out.masked_fill(~keep.to(out.device()), kMasked); };
}

double measure_increment(models::Model& model, const tasks::Task& task, const Increment& inc,
                         const std::string& metric, c10::Device device, bool bf16,
                         Collectives* comm) {
  auto m = evaluate(model, inc.task ? *inc.task : task, *inc.eval, inc.data, device, bf16,
                    increment_output_map(inc), comm);
  auto it = m.find(metric);
  SCULPT_CHECK(it != m.end(), "incremental.metric: the task has no metric '", metric, "'");
  return it->second;
}

}  // namespace sculpt::trainers
