// Autoregressive decoding for seq2seq models whose input is [source | decoder input] (DataSpec):
// greedy and beam search. The decoder input starts with token::bos; generation stops at
// token::eos, after which rows hold token::pad. pad and bos are never generated.
// Scores are the model's log-probabilities (softmax over the whole vocabulary), also when
// decoding is constrained: the constraint removes candidates, it does not renormalize.
#pragma once

#include <ATen/core/Tensor.h>

#include "core/data/docids.h"
#include "core/tasks/task.h"

namespace sculpt::tasks {

// [B, S] sources -> [B, max_len] tokens (eos included, then pad).
at::Tensor greedy_decode(const Forward& forward, const at::Tensor& source, int64_t max_len);

struct Beams {
  at::Tensor tokens;  // [B, K, max_len], best first; eos included, then pad
  at::Tensor scores;  // [B, K] summed log-probabilities (no length normalization)
};
// With `valid` (constrained decoding), every beam stays a prefix of a sequence of the trie and
// ends at one of its sequences (which end with eos); when fewer than beam_size sequences are
// possible, the remaining beams have score -inf.
Beams beam_search(const Forward& forward, const at::Tensor& source, int64_t max_len,
                  int64_t beam_size, const data::IdTrie* valid = nullptr);

}  // namespace sculpt::tasks
