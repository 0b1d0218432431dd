// Diagonal Fisher estimates that one pass publishes for a parameter so that other passes of the
// same recipe can use them: the EWC pass publishes its Fisher (the sum of its penalty terms)
// after each increment and on resume; the prune pass's `fisher` scorer uses it when present
// (else its own estimate). Process-wide, keyed by the parameter tensor.
#pragma once

#include <ATen/core/Tensor.h>

namespace sculpt::compression {

void publish_fisher(const at::Tensor& param, const at::Tensor& fisher);
// The Fisher published for `param` (its shape), or an undefined tensor.
at::Tensor published_fisher(const at::Tensor& param);
void withdraw_fisher(const at::Tensor& param);

}  // namespace sculpt::compression
