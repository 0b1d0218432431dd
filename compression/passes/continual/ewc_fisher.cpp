// The ewc pass's Fisher estimation: per-sample backward (diagonal_fisher) or one batch at once.
#include <torch/torch.h>

#include <algorithm>

#include "compression/passes/continual/ewc.h"
#include "compression/passes/continual/ewc_internal.h"
#include "core/models/model.h"
#include "core/nn/layers.h"
#include "core/tasks/task.h"

namespace sculpt::compression {

std::vector<at::Tensor> diagonal_fisher(const tasks::Task& task,
                                        const std::function<at::Tensor(const at::Tensor&)>& forward,
                                        const std::vector<at::Tensor>& params,
                                        const at::Tensor& inputs, const at::Tensor& targets,
                                        bool empirical, at::Generator gen) {
  std::vector<at::Tensor> fisher;
  for (const auto& p : params) fisher.push_back(torch::zeros_like(p, at::kFloat));
  const int64_t n = inputs.size(0);
  for (int64_t i = 0; i < n; ++i) {
    const auto nll = -task.sample_log_likelihood(forward(inputs.narrow(0, i, 1)),
                                                 targets.narrow(0, i, 1), !empirical, gen)
                          .sum();
    auto grads = torch::autograd::grad({nll}, params, {}, false, false, true);
    torch::NoGradGuard no_grad;
    for (size_t k = 0; k < params.size(); ++k)
      if (grads[k].defined()) fisher[k].add_(grads[k].to(at::kFloat).pow(2));
  }
  for (auto& f : fisher) f.div_(static_cast<double>(std::max<int64_t>(n, 1)));
  return fisher;
}

// The Fisher sums of one batch from one forward and one backward, when every parameter is the
// weight or bias of a Linear layer with no weight transform: with a_i the layer's input row
// and g_i = d(-log p(y_i | x_i))/dz_i the gradient at its output row, the per-sample weight
// gradient is the outer product g_i a_i^T, so sum_i (g_i a_i^T)^2 = (g^2)^T (a^2) and the
// bias's is sum_i g_i^2 -- exact per-sample squares, since in eval mode z_i depends on
// sample i alone. False (nothing added) when the batch does not fit: a layer seen other than
// once, inputs other than [B, features], token-sequence targets.
bool linear_fisher_sums(models::Model& model, const tasks::Task& task, const at::Tensor& inputs,
                        const at::Tensor& targets, at::Generator& gen, bool empirical,
                        const std::vector<EwcParam>& params, std::vector<at::Tensor>& sums) {
  if (targets.dim() != 1) return false;
  std::vector<nn::Linear*> layers;
  std::vector<size_t> layer_of;
  for (const auto& p : params) {
    auto* lin = dynamic_cast<nn::Linear*>(p.module.get());
    if (!lin || lin->runtime() || !lin->weight_transform_names().empty()) return false;
    size_t idx = std::find(layers.begin(), layers.end(), lin) - layers.begin();
    if (idx == layers.size()) layers.push_back(lin);
    layer_of.push_back(idx);
  }
  std::vector<at::Tensor> in(layers.size()), out(layers.size());
  std::vector<int> seen(layers.size(), 0);
  for (size_t l = 0; l < layers.size(); ++l)
    layers[l]->observe = [&, l](const at::Tensor& a, const at::Tensor& z) {
      in[l] = a;
      out[l] = z;
      ++seen[l];
    };
  at::Tensor logits;
  try {
    logits = model.forward(inputs);
  } catch (...) {
    for (auto* lin : layers) lin->observe = nullptr;
    throw;
  }
  for (auto* lin : layers) lin->observe = nullptr;
  for (size_t l = 0; l < layers.size(); ++l)
    if (seen[l] != 1 || in[l].dim() != 2 || out[l].dim() != 2 || !out[l].requires_grad())
      return false;
  if (logits.dim() != 2) return false;
  const auto nll = -task.sample_log_likelihood(logits, targets, !empirical, gen).sum();
  const auto g = torch::autograd::grad({nll}, out, {}, false, false, true);
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < params.size(); ++k) {
    const auto& gl = g[layer_of[k]];
    if (!gl.defined()) continue;
    const auto g2 = gl.to(at::kFloat).square();
    if (params[k].is_bias)
      sums[k].add_(g2.sum(0));
    else
      sums[k].add_(at::mm(g2.t(), in[layer_of[k]].to(at::kFloat).square()));
  }
  return true;
}

}  // namespace sculpt::compression
