#include "trainers/sam.h"

#include <torch/torch.h>

#include <cmath>

namespace sculpt::trainers {

SamPerturbation::SamPerturbation(const std::vector<at::Tensor>& params, double rho, bool adaptive) {
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> with_grad, directions, norms;
  for (const auto& p : params) {
    if (!p.grad().defined()) continue;
    with_grad.push_back(p);
    directions.push_back(adaptive ? p.abs() * p.grad() : p.grad());
    norms.push_back(directions.back().norm());
  }
  if (with_grad.empty()) return;
  const double norm = at::stack(norms).norm().item<double>();
  if (!std::isfinite(norm) || norm <= 0) return;
  const double scale = rho / norm;
  params_ = std::move(with_grad);
  saved_.reserve(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    saved_.push_back(p.detach().clone());
    // ASAM: e = rho |w| (|w| g) / ||w g|| = rho w^2 g / ||w g||.
    p.add_(adaptive ? directions[i] * p.abs() : directions[i], scale);
  }
}

void SamPerturbation::restore() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) params_[i].copy_(saved_[i]);
  params_.clear();
  saved_.clear();
}

BufferSnapshot::BufferSnapshot(const std::vector<at::Tensor>& buffers) {
  torch::NoGradGuard no_grad;
  for (const auto& b : buffers)
    if (b.defined()) {
      buffers_.push_back(b);
      saved_.push_back(b.detach().clone());
    }
}

void BufferSnapshot::restore() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < buffers_.size(); ++i) buffers_[i].copy_(saved_[i]);
}

}  // namespace sculpt::trainers
