// What a run is built from, shared by `sculpt train` and `sculpt eval`: the data and its split,
// the model and the task, all made from the registries the config names; plus evaluation and
// the model's weights as named tensors.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "core/config/config.h"
#include "core/data/dataset.h"
#include "core/io/safetensors.h"
#include "core/models/model.h"
#include "core/run/collectives.h"
#include "core/tasks/task.h"

namespace sculpt::trainers {

struct RunParts {
  std::unique_ptr<data::Dataset> all;
  data::Split split;
  std::unique_ptr<data::Dataset> test;   // the dataset's own test part; null when it has none
  std::unique_ptr<models::Model> model;  // already on `device`
  std::shared_ptr<tasks::Task> task;  // shared with the passes (StepContext::task)
};

RunParts build_run_parts(const config::Config& c, c10::Device device);

// Mixed precision: whether trainer.precision puts forward passes on `device` under bf16
// autocast, and the guard that does it (restoring the previous state when it ends).
bool use_bf16(config::Precision precision, c10::Device device);
class Autocast {
 public:
  Autocast(c10::Device device, bool enabled);
  ~Autocast();
  Autocast(const Autocast&) = delete;
  Autocast& operator=(const Autocast&) = delete;

 private:
  c10::DeviceType type_;
  bool enabled_, was_enabled_ = false;
  c10::ScalarType was_dtype_ = c10::ScalarType::Float;
};

// Metrics of `model` over `ds` (eval mode, no grad), batched by data.batch_size, inputs
// normalized as data.normalize_* say and never augmented; under bf16 autocast when `bf16`;
// `map_outputs`, when set, is applied to the outputs before the metrics (task-incremental
// logit masks). With `comm` in a group of several ranks (data parallel, equal weights on every
// rank), each rank evaluates a disjoint shard (rows rank, rank + n, ...) and the task's sums are
// added over the ranks: every rank returns the metrics of the whole of `ds`.
std::map<std::string, double> evaluate(
    models::Model& model, const tasks::Task& task, const data::Dataset& ds,
    const config::DataConfig& data, c10::Device device, bool bf16 = false,
    const std::function<at::Tensor(const at::Tensor&)>& map_outputs = {},
    Collectives* comm = nullptr);

// Adds every rank's metric sums (a key missing on a rank counts as 0 there).
void all_reduce_sums(tasks::MetricSums& sums, Collectives& comm);

}  // namespace sculpt::trainers
