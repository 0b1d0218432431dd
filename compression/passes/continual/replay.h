// replay: experience replay for continual learning. At the end of every increment the
// increment's training rows stream, in a random order, through a fixed-size buffer kept by one
// of three policies; at every step a replay minibatch drawn from the buffer is concatenated with
// the new batch. The buffer (rows, labels, scores, counters and the generator's state) is part
// of the pass state, so it is in every checkpoint and continues across runs (resume_from).
// For generative retrieval, `source: pseudo_queries` streams generated queries instead (random
// spans of each document of the increment with its ID, pseudo_queries.h), `both` the rows and
// the generated queries: the buffer then holds so many queries per document, not stored rows.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "compression/pass.h"

namespace sculpt::compression {

enum class ReplayPolicy { reservoir, class_balanced, importance };
inline const config::Spellings<ReplayPolicy> kReplayPolicies = {
    {ReplayPolicy::reservoir, "reservoir"},
    {ReplayPolicy::class_balanced, "class_balanced"},
    {ReplayPolicy::importance, "importance"}};

enum class ReplaySource { rows, pseudo_queries, both, documents };
inline const config::Spellings<ReplaySource> kReplaySources = {
    {ReplaySource::rows, "rows"},
    {ReplaySource::pseudo_queries, "pseudo_queries"},
    {ReplaySource::both, "both"},
    {ReplaySource::documents, "documents"}};

struct ReplayOptions : config::WholeModelOptions {
  int64_t buffer = 1000;                          // samples kept, >= 1
  ReplayPolicy policy = ReplayPolicy::reservoir;  // reservoir | class_balanced | importance
  int64_t batch_size = 0;           // replayed samples per step; 0: ratio decides
  double ratio = 1.0;               // replayed samples per new sample (when batch_size is 0)
  ReplaySource source = ReplaySource::rows;  // what streams through the buffer
  int64_t pseudo_queries = 4;  // pseudo_queries | both: generated queries per document, >= 1
  int64_t span_min = 0;        // a generated query's shortest span (tokens); 0: span_max
  int64_t span_max = 0;        // its longest span; 0: the dataset's query length
  void visit(config::Visitor& v) override;
  void check(config::Checker& c) const override;
};

// The buffer's policies over a stream of samples, one add() per sample:
// - reservoir: each of the `seen` samples is kept with probability capacity / seen (Vitter's
//   algorithm R);
// - class_balanced: while full, a sample of a class holding the most slots evicts a random
//   sample of its own class with probability slots / seen-of-its-class, a sample of another
//   class always evicts a random sample of a largest class: class counts end within one of
//   each other (when every class has enough samples), each class a reservoir of its own;
// - importance: the `capacity` samples with the highest score (e.g. the loss) are kept.
class ReplayBuffer {
 public:
  ReplayBuffer(int64_t capacity, ReplayPolicy policy);
  // Offers one sample (input row without the batch dimension, integer label, score); `rng`
  // draws the random choices. Returns the slot it went to, or -1.
  int64_t add(const at::Tensor& input, int64_t label, double score, std::mt19937_64& rng);
  int64_t size() const { return static_cast<int64_t>(labels_.size()); }
  int64_t seen() const { return seen_; }
  int64_t bytes() const;  // the kept samples' tensor bytes (token rows as int16 where they fit)
  // The kept samples: inputs [size, ...], labels [size], and each slot's stream position.
  at::Tensor inputs() const;
  at::Tensor labels() const;
  const std::vector<int64_t>& positions() const { return positions_; }
  std::map<int64_t, int64_t> class_counts() const;
  // Tensors and counters (for the pass state).
  void save(std::vector<std::pair<std::string, at::Tensor>>& tensors, nlohmann::json& meta) const;
  void load(const std::vector<std::pair<std::string, at::Tensor>>& tensors,
            const nlohmann::json& meta);

 private:
  void put(int64_t slot, const at::Tensor& input, int64_t label, double score);
  at::Tensor stored(const at::Tensor& input);  // the row as kept (CPU, token rows narrowed)
  int64_t capacity_;
  ReplayPolicy policy_;
  int64_t seen_ = 0;
  std::map<int64_t, int64_t> seen_per_class_;
  std::vector<at::Tensor> rows_;
  std::vector<int64_t> labels_;
  std::vector<double> scores_;
  std::vector<int64_t> positions_;  // stream position of each kept sample
};

std::unique_ptr<CompressionPass> make_replay_pass(const config::PassConfig& cfg);

}  // namespace sculpt::compression
