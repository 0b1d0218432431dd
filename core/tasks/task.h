// Tasks own the loss and the metrics of a run. Metrics are accumulated as sums over batches
// (so an epoch's accuracy is exact, not an average of batch averages) and then finished.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>

#include "core/config/config.h"
#include "core/data/dataset.h"
#include "core/registry/registry.h"

namespace sculpt::tasks {

using MetricSums = std::map<std::string, double>;

class Task {
 public:
  virtual ~Task() = default;
  // The training loss of one batch (a scalar with grad).
  virtual at::Tensor loss(const at::Tensor& outputs, const at::Tensor& targets) const = 0;
  // Adds one batch (outputs without grad) to `sums`.
  virtual void accumulate(MetricSums& sums, const at::Tensor& outputs,
                          const at::Tensor& targets) const = 0;
  // Metric values from the sums, e.g. {"loss": 0.31, "accuracy": 0.92}.
  virtual std::map<std::string, double> finish(const MetricSums& sums) const = 0;
};

using TaskRegistry = Registry<Task, const config::TaskConfig&, const data::DataSpec&>;
TaskRegistry& task_registry();
void register_builtin_tasks(TaskRegistry& r);

struct ClassificationOptions : config::Section {
  double label_smoothing = 0.0;  // cross-entropy label smoothing, in [0, 1)
  void visit(config::Visitor& v) override;
};

}  // namespace sculpt::tasks
