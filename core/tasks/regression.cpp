// Regression: mean squared error against float targets; metrics mse (the loss) and mae.
#include <ATen/ATen.h>

#include "core/error.h"
#include "core/tasks/task.h"

namespace sculpt::tasks {

namespace {

class Regression final : public Task {
 public:
  at::Tensor loss(const at::Tensor& outputs, const at::Tensor& targets) const override {
    return at::mse_loss(shaped(outputs, targets), targets.to(outputs.scalar_type()));
  }

  void accumulate(MetricSums& sums, const at::Tensor& outputs,
                  const at::Tensor& targets) const override {
    auto diff = shaped(outputs, targets).to(at::kDouble) - targets.to(at::kDouble);
    sums["squared_error"] += diff.square().sum().item<double>();
    sums["abs_error"] += diff.abs().sum().item<double>();
    sums["count"] += static_cast<double>(targets.numel());
  }

  std::map<std::string, double> finish(const MetricSums& sums) const override {
    const double n = sums.count("count") ? sums.at("count") : 0.0;
    if (n == 0) return {};
    return {{"loss", sums.at("squared_error") / n}, {"mae", sums.at("abs_error") / n}};
  }

  // A Gaussian of unit variance around the prediction: log p(y | x) = -|y - f(x)|^2 / 2 (+ a
  // constant), summed over a row's values; sampled: y = f(x) + N(0, 1) noise.
  at::Tensor sample_log_likelihood(const at::Tensor& outputs, const at::Tensor& targets,
                                   bool sampled, at::Generator& gen) const override {
    const auto f = shaped(outputs, targets).to(at::kFloat);
    at::Tensor y = targets.to(at::kFloat);
    if (sampled) {
      at::NoGradGuard no_grad;
      y = f.detach() + at::normal(0.0, 1.0, f.sizes(), gen, f.options());
    }
    return (y - f).square().reshape({f.size(0), -1}).sum(1) * -0.5;
  }

 private:
  // A model that predicts one value per row gives [B, 1]; targets are [B].
  static at::Tensor shaped(const at::Tensor& outputs, const at::Tensor& targets) {
    SCULPT_CHECK(outputs.numel() == targets.numel(), "task regression: the model predicts ",
                 outputs.sizes(), " for targets ", targets.sizes());
    return outputs.reshape(targets.sizes());
  }
};

}  // namespace

void add_regression(TaskRegistry& r) {
  r.add("regression", "mean squared error on float targets; metrics loss (MSE), mae",
        [](const config::TaskConfig&, const data::DataSpec& spec) -> std::unique_ptr<Task> {
          SCULPT_CHECK(spec.num_classes == 0 && spec.vocab_size == 0,
                       "task regression: the dataset has class or token targets (use "
                       "classification or language_model)");
          return std::make_unique<Regression>();
        });
}

}  // namespace sculpt::tasks
