// Sharpness-aware minimization (optimizer.sam_rho; Foret et al. 2021, "Sharpness-Aware
// Minimization for Efficiently Improving Generalization") and its adaptive form (ASAM,
// optimizer.sam_adaptive; Kwon et al. 2021). From the step's gradient g at w (the task loss and
// the passes' extra losses, over every parameter the optimizer trains that has a gradient):
//   SAM   e = rho * g / ||g||_2
//   ASAM  e = rho * w^2 * g / ||w * g||_2      (elementwise products; ||.||_2 over all of them)
// The loop then takes the same micro-batches' gradient at w + e, puts w back (bit for bit, from
// a copy: (w + e) - e need not be w) and lets the optimizer step from w with that gradient.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace sculpt::trainers {

class SamPerturbation {
 public:
  // Moves every tensor of `params` that has a gradient from w to w + e (without autograd) and
  // keeps w. Does nothing when the gradients' norm is 0 or not finite (empty() then): there is
  // no direction to climb, and the step keeps its gradient. The norm is of the gradients as
  // they are (after DDP's reduction, the same on every rank), so every rank decides alike.
  SamPerturbation(const std::vector<at::Tensor>& params, double rho, bool adaptive);
  // Puts w back; idempotent.
  void restore();
  bool empty() const { return params_.empty(); }

 private:
  std::vector<at::Tensor> params_;  // the perturbed parameters
  std::vector<at::Tensor> saved_;   // their w
};

// The model's buffers (BatchNorm statistics, quantization observers) before SAM's second
// forwards, put back after them: the step's statistics are those of its forwards at w.
class BufferSnapshot {
 public:
  explicit BufferSnapshot(const std::vector<at::Tensor>& buffers);
  void restore();

 private:
  std::vector<at::Tensor> buffers_, saved_;
};

}  // namespace sculpt::trainers
