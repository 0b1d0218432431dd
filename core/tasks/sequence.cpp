// Token-sequence tasks. language_model: next-token cross-entropy over every position; metrics
// loss (per token), perplexity = exp(loss), accuracy (next token). seq2seq: teacher-forced
// cross-entropy over the target tokens (padding ignored); metrics loss, token_accuracy and,
// by decoding, exact_match (greedy), hits@k (the target among the k best beams) and mrr@k.
// generative_retrieval: seq2seq with its decoding constrained to the dataset's document IDs.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/tasks/decoding.h"
#include "core/tasks/wilson.h"
#include "core/tasks/task.h"

namespace sculpt::tasks {

void Seq2SeqOptions::visit(config::Visitor& v) {
  v.field("label_smoothing", label_smoothing, "seq2seq: cross-entropy label smoothing",
          config::Range::half_open(0, 1));
  v.field("greedy", greedy, "seq2seq: evaluation decodes greedily and reports exact_match");
  v.field("beam_size", beam_size, "seq2seq: evaluation beam search width for hits@k; 0: off",
          config::Range::at_least(0));
  v.field("hits_at", hits_at, "seq2seq: k of the hits@k metrics (each <= beam_size)",
          config::Range::at_least(1));
  v.field("mrr_at", mrr_at, "seq2seq: also report mrr@k, the mean reciprocal rank of the target "
          "among the k best beams (<= beam_size); 0: off", config::Range::at_least(0));
  v.field("constrained", constrained,
          "seq2seq: beams only follow the dataset's valid targets (gr_* document IDs)");
}

void Seq2SeqOptions::check(config::Checker& c) const {
  for (auto k : hits_at)
    if (k > beam_size)
      c.error("hits_at", "hits@" + std::to_string(k) + " needs beam_size >= " +
                             std::to_string(k) + " (beam_size is " + std::to_string(beam_size) +
                             ")");
  if (mrr_at > beam_size)
    c.error("mrr_at", "mrr@" + std::to_string(mrr_at) + " needs beam_size >= " +
                          std::to_string(mrr_at) + " (beam_size is " + std::to_string(beam_size) +
                          ")");
}

namespace {

at::Tensor flat_logits(const at::Tensor& outputs) {
  return outputs.reshape({-1, outputs.size(-1)});
}

// log p of each row's token sequence: the sum over its positions of log softmax at the target
// token (or at one drawn from the softmax), positions whose target is padding left out when
// `skip_padding`.
at::Tensor sequence_log_likelihood(const at::Tensor& outputs, const at::Tensor& targets,
                                   bool sampled, at::Generator& gen, bool skip_padding) {
  const auto logp = at::log_softmax(outputs.to(at::kFloat), -1).reshape({-1, outputs.size(-1)});
  const auto real = targets.reshape({-1}).to(at::kLong);
  at::Tensor y = real;
  if (sampled) {
    at::NoGradGuard no_grad;
    y = at::multinomial(logp.exp(), 1, false, gen).reshape({-1});
  }
  auto per_token = logp.gather(1, y.unsqueeze(1)).squeeze(1);
  if (skip_padding) per_token = per_token * real.ne(data::token::pad).to(at::kFloat);
  return per_token.reshape({targets.size(0), -1}).sum(1);
}

class LanguageModel final : public Task {
 public:
  at::Tensor loss(const at::Tensor& outputs, const at::Tensor& targets) const override {
    return at::cross_entropy_loss(flat_logits(outputs), targets.reshape(-1));
  }
  void accumulate(MetricSums& sums, const at::Tensor& outputs,
                  const at::Tensor& targets) const override {
    const auto n = static_cast<double>(targets.numel());
    sums["loss_sum"] += at::cross_entropy_loss(flat_logits(outputs).to(at::kFloat),
                                               targets.reshape(-1))
                            .item<double>() *
                        n;
    sums["correct"] += outputs.argmax(-1).eq(targets).sum().item<double>();
    sums["count"] += n;
  }
  std::map<std::string, double> finish(const MetricSums& sums) const override {
    const double n = sums.count("count") ? sums.at("count") : 0.0;
    if (n == 0) return {};
    const double loss = sums.at("loss_sum") / n;
    return {{"loss", loss}, {"perplexity", std::exp(loss)}, {"accuracy", sums.at("correct") / n}};
  }
  // Next-token log-likelihood over every position (the loss counts them all).
  at::Tensor sample_log_likelihood(const at::Tensor& outputs, const at::Tensor& targets,
                                   bool sampled, at::Generator& gen) const override {
    return sequence_log_likelihood(outputs, targets, sampled, gen, /*skip_padding=*/false);
  }
};

class Seq2Seq final : public Task {
 public:
  Seq2Seq(Seq2SeqOptions o, const data::DataSpec& spec, bool retrieval)
      : o_(std::move(o)), source_len_(spec.source_len), ids_(DecodeIds::of(spec)),
        valid_(spec.valid_targets), retrieval_(retrieval) {
    SCULPT_CHECK(!o_.constrained || valid_, "task option constrained: the dataset has no set of "
                 "valid targets (use a gr_synthetic or gr_jsonl dataset)");
    SCULPT_CHECK(!o_.constrained || o_.beam_size > 0,
                 "task option constrained: needs beam_size > 0");
    if (o_.beam_size > 0 && o_.hits_at.empty()) o_.hits_at = {1, o_.beam_size};
    std::sort(o_.hits_at.begin(), o_.hits_at.end());
    o_.hits_at.erase(std::unique(o_.hits_at.begin(), o_.hits_at.end()), o_.hits_at.end());
  }

  at::Tensor loss(const at::Tensor& outputs, const at::Tensor& targets) const override {
    return at::cross_entropy_loss(flat_logits(outputs), targets.reshape(-1), {},
                                  at::Reduction::Mean, data::token::pad, o_.label_smoothing);
  }

  // The target sequence's log-likelihood over its non-padding positions.
  at::Tensor sample_log_likelihood(const at::Tensor& outputs, const at::Tensor& targets,
                                   bool sampled, at::Generator& gen) const override {
    return sequence_log_likelihood(outputs, targets, sampled, gen, /*skip_padding=*/true);
  }
  bool is_seq2seq() const override { return !retrieval_; }

  void accumulate(MetricSums& sums, const at::Tensor& outputs,
                  const at::Tensor& targets) const override {
    auto real = targets.ne(data::token::pad);
    const double tokens = real.sum().item<double>();
    sums["loss_sum"] +=
        at::cross_entropy_loss(flat_logits(outputs).to(at::kFloat), targets.reshape(-1), {},
                               at::Reduction::Sum, data::token::pad)
            .item<double>();
    sums["correct_tokens"] +=
        outputs.argmax(-1).eq(targets).logical_and(real).sum().item<double>();
    sums["tokens"] += tokens;
    sums["count"] += static_cast<double>(targets.size(0));
  }

  void evaluate_batch(MetricSums& sums, const Forward& forward, const at::Tensor& inputs,
                      const at::Tensor& targets) const override {
    accumulate(sums, forward(inputs), targets);
    auto source = inputs.narrow(1, 0, source_len_);
    const int64_t max_len = targets.size(1);
    if (o_.greedy)
      sums["exact"] += greedy_decode(forward, source, max_len, ids_)
                           .eq(targets)
                           .all(1)
                           .sum()
                           .item<double>();
    if (o_.beam_size > 0) {
      auto beams = beam_search(forward, source, max_len, o_.beam_size,
                               o_.constrained ? valid_.get() : nullptr, ids_);
      // [B, K]; beams that found no sequence (score -inf) match nothing.
      auto match = beams.tokens.eq(targets.unsqueeze(1)).all(2).logical_and(
          beams.scores.isfinite());
      for (auto k : o_.hits_at)
        sums["hits@" + std::to_string(k)] += match.narrow(1, 0, k).any(1).sum().item<double>();
      if (o_.mrr_at > 0) {
        auto m = match.narrow(1, 0, o_.mrr_at).to(at::kFloat);
        auto ranks = at::arange(1, o_.mrr_at + 1, m.options());
        // The first match's 1/rank: the max of match / rank over the beams.
        sums["mrr@" + std::to_string(o_.mrr_at)] += (m / ranks).amax(1).sum().item<double>();
      }
    }
  }

  std::map<std::string, double> finish(const MetricSums& sums) const override {
    const double tokens = sums.count("tokens") ? sums.at("tokens") : 0.0;
    const double n = sums.count("count") ? sums.at("count") : 0.0;
    if (tokens == 0 || n == 0) return {};
    std::map<std::string, double> m = {{"loss", sums.at("loss_sum") / tokens},
                                       {"token_accuracy", sums.at("correct_tokens") / tokens}};
    for (const auto& [key, value] : sums) {
      if (key == "exact") m["exact_match"] = value / n;
      if (key.rfind("hits@", 0) == 0 || key.rfind("mrr@", 0) == 0) m[key] = value / n;
      if (key.rfind("hits@", 0) == 0) {  // the number of queries and a 95% interval
        const auto [lo, hi] = wilson_interval(value / n, n);
        m[key + "_n"] = n;
        m[key + "_lo"] = lo;
        m[key + "_hi"] = hi;
      }
    }
    return m;
  }

 private:
  Seq2SeqOptions o_;
  int64_t source_len_;
  DecodeIds ids_;  // the dataset's start / eos / never-generated ids
  std::shared_ptr<const data::IdTrie> valid_;
  bool retrieval_;  // generative_retrieval (not the seq2seq task proper)
};

}  // namespace

void add_sequence_tasks(TaskRegistry& r) {
  r.add("language_model",
        "next-token cross-entropy over every position; metrics loss, perplexity, accuracy",
        [](const config::TaskConfig&, const data::DataSpec& spec) -> std::unique_ptr<Task> {
          SCULPT_CHECK(spec.vocab_size > 0 && spec.source_len == 0,
                       "task language_model: needs a token dataset (e.g. tokens)");
          return std::make_unique<LanguageModel>();
        });
  r.add(
      "seq2seq",
      "teacher-forced cross-entropy; metrics loss, token_accuracy, exact_match (greedy), "
      "hits@k (beam search)",
      [](const config::TaskConfig& c, const data::DataSpec& spec) -> std::unique_ptr<Task> {
        SCULPT_CHECK(spec.vocab_size > 0 && spec.source_len > 0,
                     "task seq2seq: needs a seq2seq dataset (jsonl with query/target)");
        return std::make_unique<Seq2Seq>(
            c.options ? dynamic_cast<const Seq2SeqOptions&>(*c.options) : Seq2SeqOptions{},
            spec, /*retrieval=*/false);
      },
      [] { return std::make_shared<Seq2SeqOptions>(); });
  r.add(
      "generative_retrieval",
      "seq2seq over document IDs (gr_synthetic, gr_jsonl): beam search constrained to valid "
      "IDs; metrics loss, token_accuracy, hits@1, hits@10, mrr@10",
      [](const config::TaskConfig& c, const data::DataSpec& spec) -> std::unique_ptr<Task> {
        SCULPT_CHECK(spec.vocab_size > 0 && spec.source_len > 0 && spec.valid_targets,
                     "task generative_retrieval: needs a gr_synthetic or gr_jsonl dataset");
        return std::make_unique<Seq2Seq>(
            c.options ? dynamic_cast<const Seq2SeqOptions&>(*c.options) : RetrievalOptions{},
            spec, /*retrieval=*/true);
      },
      [] { return std::make_shared<RetrievalOptions>(); });
}

}  // namespace sculpt::tasks
