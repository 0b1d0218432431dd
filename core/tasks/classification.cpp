#include <ATen/ATen.h>

#include "core/error.h"
#include "core/tasks/task.h"

namespace sculpt::tasks {

void ClassificationOptions::visit(config::Visitor& v) {
  v.field("label_smoothing", label_smoothing, "classification: cross-entropy label smoothing",
          config::Range::half_open(0, 1));
  v.field("top_k", top_k, "classification: also report topK_accuracy when there are more classes",
          config::Range::at_least(1));
}

TaskRegistry& task_registry() {
  static TaskRegistry registry("tasks");
  return registry;
}

void Task::evaluate_batch(MetricSums& sums, const Forward& forward, const at::Tensor& inputs,
                          const at::Tensor& targets) const {
  accumulate(sums, forward(inputs), targets);
}

at::Tensor Task::sample_log_likelihood(const at::Tensor& /*outputs*/,
                                       const at::Tensor& /*targets*/, bool /*sampled*/,
                                       at::Generator& /*gen*/) const {
  SCULPT_CHECK(false, "this task defines no per-sample log-likelihood (needed for a Fisher, "
                      "e.g. by the ewc pass)");
  return {};
}

void register_builtin_tasks(TaskRegistry& r) {
  add_classification(r);
  add_regression(r);
  add_sequence_tasks(r);
}

namespace {

// Cross-entropy over classes; metrics: mean loss, top-1 and top-k accuracy.
class Classification final : public Task {
 public:
  Classification(ClassificationOptions o, int64_t classes)
      : o_(o), top_k_(classes > o.top_k ? o.top_k : 0) {}

  at::Tensor loss(const at::Tensor& outputs, const at::Tensor& targets) const override {
    return at::cross_entropy_loss(outputs, targets, {}, at::Reduction::Mean, -100,
                                  o_.label_smoothing);
  }

  // log softmax at the label (or at a label drawn from the softmax).
  at::Tensor sample_log_likelihood(const at::Tensor& outputs, const at::Tensor& targets,
                                   bool sampled, at::Generator& gen) const override {
    const auto logp = at::log_softmax(outputs.to(at::kFloat), -1).reshape({outputs.size(0), -1});
    at::Tensor y = targets.to(at::kLong).reshape({-1});
    if (sampled) {
      at::NoGradGuard no_grad;
      y = at::multinomial(logp.exp(), 1, false, gen).reshape({-1});
    }
    return logp.gather(1, y.unsqueeze(1)).squeeze(1);
  }

  void accumulate(MetricSums& sums, const at::Tensor& outputs,
                  const at::Tensor& targets) const override {
    auto n = static_cast<double>(targets.size(0));
    sums["loss_sum"] += at::cross_entropy_loss(outputs, targets).item<double>() * n;
    sums["correct"] += outputs.argmax(1).eq(targets).sum().item<double>();
    if (top_k_ > 0)
      sums["correct_top_k"] += std::get<1>(outputs.topk(top_k_, 1))
                                   .eq(targets.unsqueeze(1))
                                   .any(1)
                                   .sum()
                                   .item<double>();
    sums["count"] += n;
  }

  std::map<std::string, double> finish(const MetricSums& sums) const override {
    double n = sums.count("count") ? sums.at("count") : 0.0;
    if (n == 0) return {};
    std::map<std::string, double> m = {{"loss", sums.at("loss_sum") / n},
                                       {"accuracy", sums.at("correct") / n}};
    if (top_k_ > 0)
      m["top" + std::to_string(top_k_) + "_accuracy"] = sums.at("correct_top_k") / n;
    return m;
  }

 private:
  ClassificationOptions o_;
  int64_t top_k_;  // 0: not reported
};

}  // namespace

void add_classification(TaskRegistry& r) {
  r.add(
      "classification",
      "cross-entropy (optional label smoothing); metrics loss, accuracy, topK_accuracy",
      [](const config::TaskConfig& c, const data::DataSpec& spec) -> std::unique_ptr<Task> {
        SCULPT_CHECK(spec.num_classes > 0, "task classification: the dataset has no class labels");
        return std::make_unique<Classification>(
            c.options ? dynamic_cast<const ClassificationOptions&>(*c.options)
                      : ClassificationOptions{},
            spec.num_classes);
      },
      [] { return std::make_shared<ClassificationOptions>(); });
}

}  // namespace sculpt::tasks
