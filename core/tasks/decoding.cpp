#include "core/tasks/decoding.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "core/data/dataset.h"
#include "core/models/decode_cache.h"

namespace sculpt::tasks {

namespace {
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Log-probabilities of the next token, [N, V], with the tokens that are never generated ruled
// out: the pad id and the start id, unless either is the eos id. The next token's logits are
// the last position's: of every decoder position, or of the last alone where the model's head
// honours the DecodeScope's last_only (each decode below opens its scope so).
at::Tensor next_log_probs(const Forward& forward, const at::Tensor& source,
                          const at::Tensor& decoder_in, const DecodeIds& ids) {
  auto logits = forward(at::cat({source, decoder_in}, 1));
  auto logp = logits.select(1, logits.size(1) - 1).to(at::kFloat).log_softmax(-1);
  for (const int64_t never : {ids.pad, ids.start})
    if (never >= 0 && never != ids.eos && never < logp.size(1))
      logp.select(1, never).fill_(kNegInf);
  return logp;
}
}  // namespace

DecodeIds DecodeIds::of(const data::DataSpec& spec) {
  return {spec.decoder_start_id, spec.eos_id, spec.pad_id};
}

at::Tensor greedy_decode(const Forward& forward, const at::Tensor& source, int64_t max_len,
                         const DecodeIds& ids) {
  // The source is the same at every step; only the next token's logits are read.
  const models::DecodeScope reuse_encoder(1, /*last_only=*/true);
  const int64_t b = source.size(0);
  auto opts = source.options().dtype(at::kLong);
  auto out = at::full({b, max_len}, data::token::pad, opts);
  auto decoder_in = at::full({b, 1}, ids.start, opts);
  auto done = at::zeros({b}, opts.dtype(at::kBool));
  for (int64_t t = 0; t < max_len; ++t) {
    auto next = next_log_probs(forward, source, decoder_in, ids).argmax(-1);
    next.masked_fill_(done, data::token::pad);
    out.select(1, t).copy_(next);
    done.logical_or_(next.eq(ids.eos));
    if (done.all().item<bool>() || t + 1 == max_len) break;
    decoder_in = at::cat({decoder_in, next.unsqueeze(1)}, 1);
  }
  return out;
}

namespace {
// Constrained beam search with its bookkeeping on the host: per beam only the tokens the trie
// allows are candidates (a handful), so choosing the next beams is a small sort rather than a
// dozen tensor operations over [B, K * V] per step, which at batch 1 cost as much as a decoder
// layer. The same rules as the unconstrained tensor version below (and the same next_log_probs):
// a finished beam continues with pad at no cost, pad and bos are never generated.
Beams constrained_beam_search(const Forward& forward, const at::Tensor& source, int64_t max_len,
                              int64_t k, const data::IdTrie& trie, const DecodeIds& ids) {
  // The same source every step and for k beams; only the next token's logits are read.
  const models::DecodeScope reuse_encoder(k, /*last_only=*/true);
  const int64_t b = source.size(0), n = b * k;
  const auto src = source.repeat_interleave(k, 0);  // [B*K, S]: beam j of row i at i*K + j
  constexpr float kDead = -std::numeric_limits<float>::infinity();
  // Per beam: its tokens so far ([n, t] row-major), score, trie node (-1: dead), ended (eos).
  std::vector<int64_t> tokens;
  std::vector<float> score(size_t(n), kDead);
  std::vector<int64_t> node(size_t(n), -1);
  std::vector<char> ended(size_t(n), 0);
  for (int64_t i = 0; i < b; ++i) score[size_t(i * k)] = 0.0f, node[size_t(i * k)] = 0;
  struct Candidate {
    float score;
    int64_t from, token;
  };
  std::vector<Candidate> cands;
  int64_t t = 0;
  while (t < max_len) {
    auto decoder_in = at::empty({n, t + 1}, at::kLong);
    auto* din = decoder_in.data_ptr<int64_t>();
    for (int64_t r = 0; r < n; ++r) {
      din[r * (t + 1)] = ids.start;
      std::copy_n(tokens.data() + r * t, t, din + r * (t + 1) + 1);
    }
    // Log-probabilities over the whole vocabulary, of which the trie's tokens are read.
    const auto last =
        next_log_probs(forward, src, decoder_in.to(src.device()), ids).to(at::kCPU).contiguous();
    const int64_t v = last.size(1);
    const float* lp = last.const_data_ptr<float>();
    std::vector<int64_t> next_tokens(size_t(n * (t + 1)), data::token::pad);
    std::vector<float> next_score(size_t(n), kDead);
    std::vector<int64_t> next_node(size_t(n), -1);
    std::vector<char> next_ended(size_t(n), 1);  // a dead beam counts as ended
    for (int64_t i = 0; i < b; ++i) {
      cands.clear();
      for (int64_t j = 0; j < k; ++j) {
        const int64_t r = i * k + j;
        if (node[size_t(r)] < 0 || score[size_t(r)] == kDead) continue;
        if (ended[size_t(r)]) {  // continues with pad only, at no cost
          cands.push_back({score[size_t(r)], j, data::token::pad});
          continue;
        }
        for (int64_t tok : trie.allowed(node[size_t(r)]))
          if (tok < v)  // pad and start are -inf: a dead candidate, never kept
            cands.push_back({score[size_t(r)] + lp[r * v + tok], j, tok});
      }
      const auto keep = static_cast<std::ptrdiff_t>(std::min(cands.size(), size_t(k)));
      std::partial_sort(cands.begin(), cands.begin() + keep, cands.end(),
                        [](const Candidate& a, const Candidate& c) {
                          if (a.score != c.score) return a.score > c.score;
                          return a.from != c.from ? a.from < c.from : a.token < c.token;
                        });
      for (std::ptrdiff_t slot = 0; slot < keep; ++slot) {
        const Candidate& c = cands[size_t(slot)];
        if (c.score == kDead) break;
        const int64_t r = i * k + slot, parent = i * k + c.from;
        std::copy_n(tokens.data() + parent * t, t, next_tokens.data() + r * (t + 1));
        next_tokens[size_t(r * (t + 1) + t)] = c.token;
        next_score[size_t(r)] = c.score;
        const int64_t pn = node[size_t(parent)];
        // A beam that ended stays at its end node.
        next_node[size_t(r)] = trie.is_end(pn) ? pn : trie.child(pn, c.token);
        next_ended[size_t(r)] = ended[size_t(parent)] || c.token == ids.eos;
      }
    }
    tokens = std::move(next_tokens);
    score = std::move(next_score);
    node = std::move(next_node);
    ended = std::move(next_ended);
    ++t;
    if (std::all_of(ended.begin(), ended.end(), [](char e) { return e != 0; })) break;
  }
  auto out = at::full({b, k, max_len}, data::token::pad, at::kLong);
  auto acc = out.accessor<int64_t, 3>();
  for (int64_t r = 0; r < n; ++r)
    for (int64_t p = 0; p < t; ++p) acc[r / k][r % k][p] = tokens[size_t(r * t + p)];
  auto scores = at::from_blob(score.data(), {b, k}, at::kFloat).clone();
  return {out.to(source.device()), scores.to(source.device())};
}
}  // namespace

Beams beam_search(const Forward& forward, const at::Tensor& source, int64_t max_len,
                  int64_t beam_size, const data::IdTrie* valid, const DecodeIds& ids) {
  if (valid) return constrained_beam_search(forward, source, max_len, beam_size, *valid, ids);
  // The source is the same at every step, and the same for the k beams of a row; only the
  // next token's logits are read.
  const models::DecodeScope reuse_encoder(beam_size, /*last_only=*/true);
  const int64_t b = source.size(0), k = beam_size;
  auto opts = source.options().dtype(at::kLong);
  auto src = source.repeat_interleave(k, 0);  // [B*K, S]: beam j of row i at i*K + j
  auto seqs = at::empty({b, k, 0}, opts);
  // Only the first beam is alive at the start, so the first step expands it alone.
  auto scores = at::full({b, k}, kNegInf, opts.dtype(at::kFloat));
  scores.select(1, 0).fill_(0.0);
  auto finished = at::zeros({b, k}, opts.dtype(at::kBool));
  auto start = at::full({b * k, 1}, ids.start, opts);
  for (int64_t t = 0; t < max_len; ++t) {
    auto decoder_in = at::cat({start, seqs.reshape({b * k, t})}, 1);
    auto logp = next_log_probs(forward, src, decoder_in, ids);
    const int64_t v = logp.size(1);
    logp = logp.view({b, k, v});
    // A finished beam continues only with pad, at no cost, so it keeps its score.
    auto after_end = at::full({v}, kNegInf, logp.options());
    after_end[data::token::pad] = 0.0;
    logp = at::where(finished.unsqueeze(-1), after_end, logp);
    auto [top_scores, top_idx] = (scores.unsqueeze(-1) + logp).view({b, k * v}).topk(k, 1);
    auto from = top_idx.div(v, "floor");
    auto token = top_idx.remainder(v);
    seqs = at::cat({seqs.gather(1, from.unsqueeze(-1).expand({b, k, t})), token.unsqueeze(-1)}, 2);
    finished = finished.gather(1, from).logical_or(token.eq(ids.eos));
    scores = top_scores;
    if (finished.all().item<bool>()) break;
  }
  const int64_t made = seqs.size(2);
  if (made < max_len)
    seqs = at::cat({seqs, at::full({b, k, max_len - made}, data::token::pad, opts)}, 2);
  return {seqs, scores};
}

}  // namespace sculpt::tasks
