// Greedy decoding of token models: decoder-only (prompt [B, P] -> [B, P + n]) and seq2seq
// ([source | decoder start] -> decoder ids [B, 1 + n]). With the KV cache (KvScope) each step
// runs the model on the new token only; without it, on the whole sequence (the reference).
#pragma once

#include <ATen/core/Tensor.h>

#include "core/models/model.h"

namespace sculpt::models {

struct GenerateOptions {
  int64_t new_tokens = 32;
  bool cache = true;
  int64_t source_len = 0;  // seq2seq: the source positions at the front of `input`
  int64_t start_id = 0;    // seq2seq: the decoder's first token
  int64_t eos_id = -1;     // stop a row at this token (later positions repeat it); -1: never
};

// `input`: the prompt (decoder-only) or the source [B, S] (seq2seq). Returns the prompt and the
// generated tokens (decoder-only) or the decoder ids from the start token (seq2seq).
at::Tensor generate_greedy(Model& model, const at::Tensor& input, const GenerateOptions& o);

}  // namespace sculpt::models
