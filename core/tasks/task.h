// Tasks own the loss and the metrics of a run. Metrics are accumulated as sums over batches
// (so an epoch's accuracy is exact, not an average of batch averages) and then finished.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/config/config.h"
#include "core/data/dataset.h"
#include "core/registry/registry.h"

namespace sculpt::tasks {

using MetricSums = std::map<std::string, double>;
// The model's forward pass (under the run's precision), for tasks that decode step by step.
using Forward = std::function<at::Tensor(const at::Tensor&)>;

class Task {
 public:
  virtual ~Task() = default;
  // The training loss of one batch (a scalar with grad).
  virtual at::Tensor loss(const at::Tensor& outputs, const at::Tensor& targets) const = 0;
  // Adds one batch (outputs without grad) to `sums`.
  virtual void accumulate(MetricSums& sums, const at::Tensor& outputs,
                          const at::Tensor& targets) const = 0;
  // Adds one evaluation batch: by default accumulate(forward(inputs)); seq2seq also decodes.
  virtual void evaluate_batch(MetricSums& sums, const Forward& forward, const at::Tensor& inputs,
                              const at::Tensor& targets) const;
  // Metric values from the sums, e.g. {"loss": 0.31, "accuracy": 0.92}.
  virtual std::map<std::string, double> finish(const MetricSums& sums) const = 0;
  // log p(y_n | x_n) of each row n of a batch under the model's `outputs`, [N], differentiable:
  // the per-sample term of a Fisher (EWC). `sampled`: each y_n is drawn with `gen` from the
  // model's own predictive distribution (the true Fisher) instead of taken from `targets`.
  // UserError by default: a task without a likelihood cannot give a Fisher.
  virtual at::Tensor sample_log_likelihood(const at::Tensor& outputs, const at::Tensor& targets,
                                           bool sampled, at::Generator& gen) const;
  // Whether this is the seq2seq task: teacher-forced token targets whose padding does not count
  // (distill masks padding positions by default). generative_retrieval answers false: its
  // recipes (configs/gr) distil every position.
  virtual bool is_seq2seq() const { return false; }
};

using TaskRegistry = Registry<Task, const config::TaskConfig&, const data::DataSpec&>;
TaskRegistry& task_registry();
void register_builtin_tasks(TaskRegistry& r);

struct ClassificationOptions : config::Section {
  double label_smoothing = 0.0;  // cross-entropy label smoothing, in [0, 1)
  int64_t top_k = 5;             // also report top-k accuracy (when there are more classes)
  void visit(config::Visitor& v) override;
};

struct Seq2SeqOptions : config::Section {
  double label_smoothing = 0.0;  // teacher-forced cross-entropy label smoothing, in [0, 1)
  bool greedy = true;            // evaluation decodes greedily: exact_match
  int64_t beam_size = 0;         // evaluation beam search of this width: hits@k; 0: off
  std::vector<int64_t> hits_at;  // k of the hits@k metrics (<= beam_size); empty: 1, beam_size
  int64_t mrr_at = 0;            // also report mrr@k (<= beam_size); 0: off
  bool constrained = false;      // beams only follow the dataset's valid targets (gr_* IDs)
  void visit(config::Visitor& v) override;
  void check(config::Checker& c) const override;
};

// generative_retrieval: seq2seq whose evaluation decodes document IDs by beam search
// constrained to the corpus's valid IDs; Hits@1, Hits@10 and MRR@10 by default.
struct RetrievalOptions : Seq2SeqOptions {
  RetrievalOptions() {
    greedy = false;
    beam_size = 10;
    hits_at = {1, 10};
    mrr_at = 10;
    constrained = true;
  }
};

// Registration, one function per file (called from register_builtin_tasks: one list).
void add_classification(TaskRegistry& r);
void add_regression(TaskRegistry& r);
void add_sequence_tasks(TaskRegistry& r);

}  // namespace sculpt::tasks
