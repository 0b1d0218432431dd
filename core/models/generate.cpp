#include "core/models/generate.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "core/models/decode_cache.h"
#include "core/models/layers_transformer.h"

namespace sculpt::models {

at::Tensor generate_greedy(Model& model, const at::Tensor& input, const GenerateOptions& o) {
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const bool seq2seq = o.source_len > 0;
  at::Tensor seq = seq2seq ? at::full({input.size(0), 1}, o.start_id, input.options()) : input;
  at::Tensor done = at::zeros({input.size(0)}, input.options().dtype(at::kBool));
  DecodeScope memo;  // the seq2seq source is encoded once either way
  std::optional<KvScope> cache;
  if (o.cache) cache.emplace();
  at::Tensor fresh = seq;  // what the cached model has not seen yet
  for (int64_t step = 0; step < o.new_tokens; ++step) {
    at::Tensor feed = o.cache ? fresh : seq;
    if (seq2seq) feed = at::cat({input, feed}, 1);
    at::Tensor logits = model.forward(feed);
    if (cache) cache->advance(fresh.size(1));
    at::Tensor next = logits.select(1, logits.size(1) - 1).argmax(-1);
    if (o.eos_id >= 0) {
      next = at::where(done, at::full_like(next, o.eos_id), next);
      done = done.logical_or(next == o.eos_id);
    }
    fresh = next.unsqueeze(1);
    seq = at::cat({seq, fresh}, 1);
    if (o.eos_id >= 0 && done.all().item<bool>()) break;
  }
  if (was_training) model.train();
  return seq;
}

}  // namespace sculpt::models
