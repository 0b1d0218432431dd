// The distillation losses as plain functions of tensors (tested against direct formulas).
// Logits are [N, C] or per token [B, T, C]; `keep` (optional, bool [B, T] or [N]) marks the
// rows that count (padding masked out).
#pragma once

#include <ATen/core/Tensor.h>

namespace sculpt::compression {

// τ²·KL(softmax(t/τ) ‖ softmax(s/τ)), averaged over the kept rows. The τ² keeps the gradient's
// scale independent of τ (Hinton et al. 2015).
at::Tensor kd_kl_loss(const at::Tensor& student, const at::Tensor& teacher, double tau,
                      const at::Tensor& keep = {});

// Relational KD (Park et al. 2019) on embeddings [N, D]: smooth-L1 between the pairwise
// distances (each normalized by its mean) plus 2x the smooth-L1 between the angles of every
// triplet.
at::Tensor relational_loss(const at::Tensor& student, const at::Tensor& teacher);

// Ranking distillation on candidate scores [N, C]: for the teacher's `top` best candidates of
// each row, every pair (i, j) the teacher orders i > j costs relu(margin - (s_i - s_j)); mean
// over pairs.
at::Tensor ranking_loss(const at::Tensor& student, const at::Tensor& teacher, int64_t top,
                        double margin);

// Mean squared error after bringing `student` to the teacher's layout (flattened per row).
at::Tensor feature_loss(const at::Tensor& student, const at::Tensor& teacher);

}  // namespace sculpt::compression
