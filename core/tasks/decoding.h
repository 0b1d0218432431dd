// Autoregressive decoding for seq2seq models whose input is [source | decoder input] (DataSpec):
// greedy and beam search. The decoder input starts with DecodeIds::start; generation stops at
// DecodeIds::eos, after which rows hold token::pad (the targets' padding). DecodeIds::pad and
// the start id are never generated (unless one of them is the eos id, as BART's start is).
// Scores are the model's log-probabilities (softmax over the whole vocabulary), also when
// decoding is constrained: the constraint removes candidates, it does not renormalize.
#pragma once

#include <ATen/core/Tensor.h>

#include "core/data/docids.h"
#include "core/tasks/task.h"

namespace sculpt::tasks {

// Which ids start, end and never appear in a generated sequence: Sculpt's vocabularies by
// default, a text dataset's tokenizer's (or hf checkpoint's) through of(spec).
struct DecodeIds {
  int64_t start = data::token::bos;
  int64_t eos = data::token::eos;  // -1: none (rows run to max_len)
  int64_t pad = data::token::pad;  // never generated; -1: none
  static DecodeIds of(const data::DataSpec& spec);
};

// [B, S] sources -> [B, max_len] tokens (eos included, then pad).
at::Tensor greedy_decode(const Forward& forward, const at::Tensor& source, int64_t max_len,
                         const DecodeIds& ids = {});

struct Beams {
  at::Tensor tokens;  // [B, K, max_len], best first; eos included, then pad
  at::Tensor scores;  // [B, K] summed log-probabilities (no length normalization)
};
// With `valid` (constrained decoding), every beam stays a prefix of a sequence of the trie and
// ends at one of its sequences (which end with eos); when fewer than beam_size sequences are
// possible, the remaining beams have score -inf.
Beams beam_search(const Forward& forward, const at::Tensor& source, int64_t max_len,
                  int64_t beam_size, const data::IdTrie* valid = nullptr,
                  const DecodeIds& ids = {});

}  // namespace sculpt::tasks
