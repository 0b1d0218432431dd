// Reuse of encoder work during autoregressive decoding. Greedy and beam search run the whole
// seq2seq model once per generated token on [source | decoder input]; the source half is the
// same at every step, and so is every encoder block's output. While a DecodeScope is alive on
// this thread, blocks that act on the source alone (transformer_seq2seq's encoder layers and
// final norm) keep their last output and return it again when the same source comes back,
// instead of recomputing it. The scope covers one decode call, within which the weights do not
// change; outside a scope, with autograd recording, or in training mode nothing is kept.
// A scope opened with repeat k > 1 (beam search: each source row repeated for its k beams)
// also runs those blocks on one row of each group of k identical rows and repeats the result,
// once it has checked that the rows really repeat (else it computes them all).
// A scope opened with last_only (greedy and beam search, which read the next token's logits
// alone) lets output heads compute the last position only: logits [B, 1, V] instead of
// [B, T, V]. Over every decoder position the head took 9% of the man-page GR student's batch-1
// beam search (up to 6 positions, 1088 outputs), over the last one 6%.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>

namespace sculpt::models {

class DecodeScope {
 public:
  explicit DecodeScope(int64_t repeat = 1, bool last_only = false);
  ~DecodeScope();
  DecodeScope(const DecodeScope&) = delete;
  DecodeScope& operator=(const DecodeScope&) = delete;

  struct Memo;

 private:
  std::unique_ptr<Memo> memo_;
  DecodeScope* outer_;
  int64_t repeat_;
  bool last_only_;
  friend bool decode_last_only();
  friend at::Tensor memoize_source(const void*, bool, const at::Tensor&,
                                   const std::function<at::Tensor(const at::Tensor&)>&);
};

// compute(source) for `block`, or that block's previous result in the current scope when
// `source` equals the source it was computed from (same shape, dtype, device and values).
// compute must act on each row (first dimension) alone: under a repeat scope it may be given
// one row of each group. `training`: the block's training flag (no reuse while training).
at::Tensor memoize_source(const void* block, bool training, const at::Tensor& source,
                          const std::function<at::Tensor(const at::Tensor&)>& compute);

// Whether a DecodeScope is active on this thread with autograd off: memoize_source may reuse.
bool decoding();
// Whether the active DecodeScope reads the last position's logits only, so that an output head
// may compute that position alone. False outside a scope, with autograd recording, and for a
// scope opened without last_only.
bool decode_last_only();

}  // namespace sculpt::models
