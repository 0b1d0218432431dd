// Reuse of encoder work during autoregressive decoding. Greedy and beam search run the whole
// seq2seq model once per generated token on [source | decoder input]; the source half is the
// same at every step, and so is every encoder block's output. While a DecodeScope is alive on
// this thread, blocks that act on the source alone (transformer_seq2seq's encoder layers and
// final norm) keep their last output and return it again when the same source comes back,
// instead of recomputing it. The scope covers one decode call, within which the weights do not
// change; outside a scope, with autograd recording, or in training mode nothing is kept.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>

namespace sculpt::models {

class DecodeScope {
 public:
  DecodeScope();
  ~DecodeScope();
  DecodeScope(const DecodeScope&) = delete;
  DecodeScope& operator=(const DecodeScope&) = delete;

  struct Memo;

 private:
  std::unique_ptr<Memo> memo_;
  DecodeScope* outer_;
  friend at::Tensor memoize_source(const void*, bool, const at::Tensor&,
                                   const std::function<at::Tensor()>&);
};

// compute() for `block` on `source`, or that block's previous result in the current scope when
// `source` equals the source it was computed from (same shape, dtype, device and values).
// `training`: the block's training flag (no reuse while training).
at::Tensor memoize_source(const void* block, bool training, const at::Tensor& source,
                          const std::function<at::Tensor()>& compute);

}  // namespace sculpt::models
