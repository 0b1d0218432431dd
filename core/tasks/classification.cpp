#include <ATen/ATen.h>

#include "core/error.h"
#include "core/tasks/task.h"

namespace sculpt::tasks {

void ClassificationOptions::visit(config::Visitor& v) {
  v.field("label_smoothing", label_smoothing, "classification: cross-entropy label smoothing",
          config::Range::half_open(0, 1));
}

TaskRegistry& task_registry() {
  static TaskRegistry registry("tasks");
  return registry;
}

namespace {

// Cross-entropy over classes; metrics: mean loss and top-1 accuracy.
class Classification final : public Task {
 public:
  explicit Classification(ClassificationOptions o) : o_(o) {}

  at::Tensor loss(const at::Tensor& outputs, const at::Tensor& targets) const override {
    return at::cross_entropy_loss(outputs, targets, {}, at::Reduction::Mean, -100,
                                  o_.label_smoothing);
  }

  void accumulate(MetricSums& sums, const at::Tensor& outputs,
                  const at::Tensor& targets) const override {
    auto n = static_cast<double>(targets.size(0));
    sums["loss_sum"] += at::cross_entropy_loss(outputs, targets).item<double>() * n;
    sums["correct"] += outputs.argmax(1).eq(targets).sum().item<double>();
    sums["count"] += n;
  }

  std::map<std::string, double> finish(const MetricSums& sums) const override {
    double n = sums.count("count") ? sums.at("count") : 0.0;
    if (n == 0) return {};
    return {{"loss", sums.at("loss_sum") / n}, {"accuracy", sums.at("correct") / n}};
  }

 private:
  ClassificationOptions o_;
};

}  // namespace

void register_builtin_tasks(TaskRegistry& r) {
  r.add(
      "classification", "cross-entropy (optional label smoothing); metrics loss, accuracy",
      [](const config::TaskConfig& c, const data::DataSpec& spec) -> std::unique_ptr<Task> {
        SCULPT_CHECK(spec.num_classes > 0, "task classification: the dataset has no class labels");
        return std::make_unique<Classification>(
            c.options ? dynamic_cast<const ClassificationOptions&>(*c.options)
                      : ClassificationOptions{});
      },
      [] { return std::make_shared<ClassificationOptions>(); });
}

}  // namespace sculpt::tasks
