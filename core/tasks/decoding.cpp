#include "core/tasks/decoding.h"

#include <ATen/ATen.h>

#include <limits>

#include "core/data/dataset.h"
#include "core/models/decode_cache.h"

namespace sculpt::tasks {

namespace {
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Log-probabilities of the next token at decoder position t, [N, V], with the tokens that are
// never generated ruled out.
at::Tensor next_log_probs(const Forward& forward, const at::Tensor& source,
                          const at::Tensor& decoder_in) {
  auto logits = forward(at::cat({source, decoder_in}, 1));
  auto logp = logits.select(1, decoder_in.size(1) - 1).to(at::kFloat).log_softmax(-1);
  logp.select(1, data::token::pad).fill_(kNegInf);
  logp.select(1, data::token::bos).fill_(kNegInf);
  return logp;
}
}  // namespace

at::Tensor greedy_decode(const Forward& forward, const at::Tensor& source, int64_t max_len) {
  const models::DecodeScope reuse_encoder;  // the source is the same at every step
  const int64_t b = source.size(0);
  auto opts = source.options().dtype(at::kLong);
  auto out = at::full({b, max_len}, data::token::pad, opts);
  auto decoder_in = at::full({b, 1}, data::token::bos, opts);
  auto done = at::zeros({b}, opts.dtype(at::kBool));
  for (int64_t t = 0; t < max_len; ++t) {
    auto next = next_log_probs(forward, source, decoder_in).argmax(-1);
    next.masked_fill_(done, data::token::pad);
    out.select(1, t).copy_(next);
    done.logical_or_(next.eq(data::token::eos));
    if (done.all().item<bool>() || t + 1 == max_len) break;
    decoder_in = at::cat({decoder_in, next.unsqueeze(1)}, 1);
  }
  return out;
}

namespace {
// [N, V] 0 where the trie allows the token after beam n's node, -inf elsewhere (all -inf for
// a dead beam, node -1).
at::Tensor trie_mask(const data::IdTrie& trie, const std::vector<int64_t>& nodes, int64_t v) {
  auto mask = at::full({static_cast<int64_t>(nodes.size()), v}, kNegInf, at::kFloat);
  auto acc = mask.accessor<float, 2>();
  for (size_t n = 0; n < nodes.size(); ++n)
    if (nodes[n] >= 0)
      for (int64_t t : trie.allowed(nodes[n]))
        if (t < v) acc[static_cast<int64_t>(n)][t] = 0.0f;
  return mask;
}
}  // namespace

Beams beam_search(const Forward& forward, const at::Tensor& source, int64_t max_len,
                  int64_t beam_size, const data::IdTrie* valid) {
  // The source is the same at every step, and the same for the k beams of a row.
  const models::DecodeScope reuse_encoder(beam_size);
  const int64_t b = source.size(0), k = beam_size;
  auto opts = source.options().dtype(at::kLong);
  auto src = source.repeat_interleave(k, 0);  // [B*K, S]: beam j of row i at i*K + j
  auto seqs = at::empty({b, k, 0}, opts);
  // Only the first beam is alive at the start, so the first step expands it alone.
  auto scores = at::full({b, k}, kNegInf, opts.dtype(at::kFloat));
  scores.select(1, 0).fill_(0.0);
  auto finished = at::zeros({b, k}, opts.dtype(at::kBool));
  auto bos = at::full({b * k, 1}, data::token::bos, opts);
  std::vector<int64_t> nodes(size_t(b * k), 0);  // constrained: each beam's trie node
  for (int64_t t = 0; t < max_len; ++t) {
    auto decoder_in = at::cat({bos, seqs.reshape({b * k, t})}, 1);
    auto logp = next_log_probs(forward, src, decoder_in);
    const int64_t v = logp.size(1);
    if (valid) logp = logp + trie_mask(*valid, nodes, v).to(logp.device());
    logp = logp.view({b, k, v});
    // A finished beam continues only with pad, at no cost, so it keeps its score.
    auto after_end = at::full({v}, kNegInf, logp.options());
    after_end[data::token::pad] = 0.0;
    logp = at::where(finished.unsqueeze(-1), after_end, logp);
    auto [top_scores, top_idx] = (scores.unsqueeze(-1) + logp).view({b, k * v}).topk(k, 1);
    auto from = top_idx.div(v, "floor");
    auto token = top_idx.remainder(v);
    seqs = at::cat({seqs.gather(1, from.unsqueeze(-1).expand({b, k, t})), token.unsqueeze(-1)}, 2);
    finished = finished.gather(1, from).logical_or(token.eq(data::token::eos));
    scores = top_scores;
    if (valid) {
      auto from_c = from.cpu().contiguous(), token_c = token.cpu().contiguous();
      auto score_c = scores.cpu().contiguous();
      const int64_t* pf = from_c.data_ptr<int64_t>();
      const int64_t* pt = token_c.data_ptr<int64_t>();
      const float* ps = score_c.data_ptr<float>();
      std::vector<int64_t> next(nodes.size(), -1);
      for (int64_t i = 0; i < b * k; ++i) {
        const int64_t parent = nodes[size_t((i / k) * k + pf[i])];
        if (parent < 0 || ps[i] == -std::numeric_limits<float>::infinity()) continue;
        // A beam that ended stays at its end node (it continues with pad only).
        next[size_t(i)] = valid->is_end(parent) ? parent : valid->child(parent, pt[i]);
      }
      nodes = std::move(next);
    }
    if (finished.all().item<bool>()) break;
  }
  const int64_t made = seqs.size(2);
  if (made < max_len)
    seqs = at::cat({seqs, at::full({b, k, max_len - made}, data::token::pad, opts)}, 2);
  return {seqs, scores};
}

}  // namespace sculpt::tasks
