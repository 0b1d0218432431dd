// The ewc pass's internals shared between ewc.cpp, ewc_fisher.cpp and ewc_penalty.cpp.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

namespace sculpt::models {
class Model;
}
namespace sculpt::nn {
class Compressible;
}
namespace sculpt::tasks {
class Task;
}

namespace sculpt::compression {

// One parameter the ewc pass protects.
struct EwcParam {
  std::string layer;
  std::string key;  // <layer>.weight / <layer>.bias
  at::Tensor param;
  double lambda = 0;
  std::shared_ptr<nn::Compressible> module;
  bool is_bias = false;
};

// Adds one batch's per-sample Fisher sums of `params` into `sums` from one forward and one
// backward when every parameter belongs to a plain Linear layer; false (nothing added) otherwise.
bool linear_fisher_sums(models::Model& model, const tasks::Task& task, const at::Tensor& inputs,
                        const at::Tensor& targets, at::Generator& gen, bool empirical,
                        const std::vector<EwcParam>& params, std::vector<at::Tensor>& sums);

// Adds lambda F (w - a) to `grad`; sum F (w - a)^2 goes to `host_sum` (fp32 CPU tensors) or is
// returned as a device scalar (anything else).
at::Tensor penalty_into_grad(const at::Tensor& w, const at::Tensor& f, const at::Tensor& a,
                             at::Tensor& grad, double lambda, double& host_sum);

}  // namespace sculpt::compression
