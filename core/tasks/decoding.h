// Autoregressive decoding for seq2seq models whose input is [source | decoder input] (DataSpec):
// greedy and beam search. The decoder input starts with token::bos; generation stops at
// token::eos, after which rows hold token::pad. pad and bos are never generated.
#pragma once

#include <ATen/core/Tensor.h>

#include "core/tasks/task.h"

namespace sculpt::tasks {

// [B, S] sources -> [B, max_len] tokens (eos included, then pad).
at::Tensor greedy_decode(const Forward& forward, const at::Tensor& source, int64_t max_len);

struct Beams {
  at::Tensor tokens;  // [B, K, max_len], best first; eos included, then pad
  at::Tensor scores;  // [B, K] summed log-probabilities (no length normalization)
};
Beams beam_search(const Forward& forward, const at::Tensor& source, int64_t max_len,
                  int64_t beam_size);

}  // namespace sculpt::tasks
