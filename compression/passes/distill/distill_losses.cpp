#include "compression/passes/distill/distill_losses.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "core/error.h"

namespace sculpt::compression {

at::Tensor kd_kl_loss(const at::Tensor& student, const at::Tensor& teacher, double tau,
                      const at::Tensor& keep) {
  SCULPT_CHECK(student.sizes() == teacher.sizes(), "distill: student outputs ", student.sizes(),
               " and teacher outputs ", teacher.sizes(), " differ in shape");
  const int64_t c = student.size(-1);
  auto s = student.reshape({-1, c}).to(at::kFloat), t = teacher.reshape({-1, c}).to(at::kFloat);
  auto log_ps = (s / tau).log_softmax(-1);
  auto log_pt = (t / tau).log_softmax(-1);
  auto per_row = (log_pt.exp() * (log_pt - log_ps)).sum(-1);  // KL per row
  if (keep.defined()) {
    auto k = keep.reshape(-1).to(per_row.scalar_type());
    return tau * tau * (per_row * k).sum() / k.sum().clamp_min(1.0);
  }
  return tau * tau * per_row.mean();
}

namespace {
at::Tensor normalized_distances(const at::Tensor& x) {
  auto d = at::cdist(x, x);
  auto off = 1 - at::eye(x.size(0), x.options());
  return d / ((d * off).sum() / off.sum()).clamp_min(1e-12);
}
// cos of the angle at j in every triplet (i, j, k): [N, N, N].
at::Tensor angles(const at::Tensor& x) {
  auto diff = x.unsqueeze(0) - x.unsqueeze(1);  // [j, i, D] = x_i - x_j
  auto unit = diff / diff.norm(2, -1, true).clamp_min(1e-12);
  return at::matmul(unit, unit.transpose(1, 2));
}
}  // namespace

at::Tensor relational_loss(const at::Tensor& student, const at::Tensor& teacher) {
  auto s = student.reshape({student.size(0), -1}).to(at::kFloat);
  auto t = teacher.reshape({teacher.size(0), -1}).to(at::kFloat);
  auto distance = at::smooth_l1_loss(normalized_distances(s), normalized_distances(t));
  auto angle = at::smooth_l1_loss(angles(s), angles(t));
  return distance + 2.0 * angle;
}

at::Tensor ranking_loss(const at::Tensor& student, const at::Tensor& teacher, int64_t top,
                        double margin) {
  SCULPT_CHECK(student.sizes() == teacher.sizes(), "distill: student scores ", student.sizes(),
               " and teacher scores ", teacher.sizes(), " differ in shape");
  auto s = student.reshape({-1, student.size(-1)}).to(at::kFloat);
  auto t = teacher.reshape({-1, teacher.size(-1)}).to(at::kFloat);
  const int64_t k = std::min<int64_t>(top, s.size(1));
  auto order = std::get<1>(t.topk(k, 1));  // teacher's best first
  auto ranked = s.gather(1, order);        // student scores in the teacher's order
  // Pairs (a, b) with a ranked above b by the teacher: a < b.
  auto upper = at::ones({k, k}, s.options().dtype(at::kBool)).triu(1);
  auto gap = ranked.unsqueeze(2) - ranked.unsqueeze(1);  // [N, a, b] = s_a - s_b
  auto cost = (margin - gap).clamp_min(0.0);
  return cost.masked_select(upper.unsqueeze(0).expand_as(cost)).mean();
}

at::Tensor feature_loss(const at::Tensor& student, const at::Tensor& teacher) {
  SCULPT_CHECK(student.numel() == teacher.numel(), "distill: student feature ", student.sizes(),
               " and teacher feature ", teacher.sizes(), " differ in size");
  return at::mse_loss(student.reshape(teacher.sizes()).to(at::kFloat), teacher.to(at::kFloat));
}

}  // namespace sculpt::compression
