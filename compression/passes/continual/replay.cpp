#include "compression/passes/continual/replay.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "compression/passes/continual/pseudo_queries.h"
#include "compression/passes/pass_options.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <sstream>

#include "core/data/gr.h"
#include "core/data/loader.h"
#include "core/data/transforms.h"
#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/safetensors.h"
#include "core/logging/logging.h"
#include "core/models/model.h"
#include "core/run/run_context.h"
#include "core/tasks/task.h"

namespace sculpt::compression {

void ReplayOptions::visit(config::Visitor& v) {
  v.field("buffer", buffer, "replay: samples kept in the buffer", config::Range::at_least(1));
  v.choice("policy", policy, kReplayPolicies,
           "replay: which samples stay: reservoir (uniform over everything seen) | "
           "class_balanced (equal slots per class) | importance (the highest loss at the end of "
           "their increment)");
  v.field("batch_size", batch_size, "replay: replayed samples per step; 0: ratio decides",
          config::Range::at_least(0));
  v.field("ratio", ratio, "replay: replayed samples per new sample when batch_size is 0",
          config::Range::at_least(0));
  v.choice("source", source, kReplaySources,
           "replay: what streams through the buffer at the end of an increment: rows (its "
           "training rows) | pseudo_queries (generative retrieval: pseudo_queries random spans of "
           "each of its documents, paired with the document's ID) | both | documents (the "
           "buffer keeps documents, and every replayed sample is a new random span of one)");
  v.field("pseudo_queries", pseudo_queries,
          "replay: source pseudo_queries or both: generated queries per document",
          config::Range::at_least(1));
  v.field("span_min", span_min,
          "replay: a generated query's shortest span of its document, in tokens; 0: span_max",
          config::Range::at_least(0));
  v.field("span_max", span_max,
          "replay: a generated query's longest span, in tokens (at most the dataset's query "
          "length); 0: the dataset's query length",
          config::Range::at_least(0));
}

void ReplayOptions::check(config::Checker& c) const {
  if (span_max > 0 && span_min > span_max)
    c.error("span_min", "expected at most span_max (" + std::to_string(span_max) + "), got " +
                            std::to_string(span_min));
  if (source != ReplaySource::rows && policy == ReplayPolicy::importance)
    c.error("policy", "importance scores stored rows by their loss; with source " +
                          std::string(config::spelling(kReplaySources, source)) +
                          " use reservoir or class_balanced");
}

namespace {
int64_t uniform(std::mt19937_64& rng, int64_t n) {  // in [0, n)
  return static_cast<int64_t>(rng() % static_cast<uint64_t>(n));
}
}  // namespace

ReplayBuffer::ReplayBuffer(int64_t capacity, ReplayPolicy policy)
    : capacity_(capacity), policy_(policy) {}

// Token rows (int64 or int32 IDs) are kept in the narrowest integer type that holds the values
// of every kept row: int16 for vocabularies up to 32,767 tokens, a quarter of int64's bytes.
// Every buffer row has the same type (a wider row widens the kept ones); readers convert back
// (on_batch to the batch's type, the document spans to int64).
at::Tensor ReplayBuffer::stored(const at::Tensor& input) {
  const auto x = input.detach().to(at::kCPU);
  const auto integer = [](at::ScalarType t) {
    return t == at::kShort || t == at::kInt || t == at::kLong;
  };
  if (!integer(x.scalar_type()) || x.numel() == 0 ||
      (!rows_.empty() && !integer(rows_.front().scalar_type())))
    return x.clone();
  const auto lo = x.min().item<int64_t>(), hi = x.max().item<int64_t>();
  auto type = lo >= std::numeric_limits<int16_t>::min() && hi <= std::numeric_limits<int16_t>::max()
                  ? at::kShort
              : lo >= std::numeric_limits<int32_t>::min() && hi <= std::numeric_limits<int32_t>::max()
                  ? at::kInt
                  : at::kLong;
  if (!rows_.empty()) {
    const auto kept = rows_.front().scalar_type();
    if (at::elementSize(kept) >= at::elementSize(type))
      type = kept;
    else
      for (auto& r : rows_) r = r.to(type);
  }
  return x.to(type, /*non_blocking=*/false, /*copy=*/true);
}

void ReplayBuffer::put(int64_t slot, const at::Tensor& input, int64_t label, double score) {
  if (slot == size()) {
    rows_.push_back(stored(input));
    labels_.push_back(label);
    scores_.push_back(score);
    positions_.push_back(seen_ - 1);
    return;
  }
  rows_[slot] = stored(input);
  labels_[slot] = label;
  scores_[slot] = score;
  positions_[slot] = seen_ - 1;
}

int64_t ReplayBuffer::add(const at::Tensor& input, int64_t label, double score,
                          std::mt19937_64& rng) {
  ++seen_;
  const int64_t seen_class = ++seen_per_class_[label];
  if (size() < capacity_) {
    put(size(), input, label, score);
    return size() - 1;
  }
  if (policy_ == ReplayPolicy::reservoir) {
    const int64_t j = uniform(rng, seen_);
    if (j >= capacity_) return -1;
    put(j, input, label, score);
    return j;
  }
  if (policy_ == ReplayPolicy::importance) {
    const auto low = std::min_element(scores_.begin(), scores_.end()) - scores_.begin();
    if (score <= scores_[low]) return -1;
    put(low, input, label, score);
    return low;
  }
  // class_balanced
  const auto counts = class_counts();
  int64_t largest = 0;
  for (const auto& [c, n] : counts) largest = std::max(largest, n);
  const auto mine = counts.find(label);
  const int64_t have = mine == counts.end() ? 0 : mine->second;
  int64_t victim_class = label;
  if (have < largest) {
    std::vector<int64_t> big;
    for (const auto& [c, n] : counts)
      if (n == largest) big.push_back(c);
    victim_class = big[uniform(rng, static_cast<int64_t>(big.size()))];
  } else if (uniform(rng, seen_class) >= have) {
    return -1;  // kept with probability have / seen_class
  }
  std::vector<int64_t> slots;
  for (int64_t i = 0; i < size(); ++i)
    if (labels_[i] == victim_class) slots.push_back(i);
  const int64_t slot = slots[uniform(rng, static_cast<int64_t>(slots.size()))];
  put(slot, input, label, score);
  return slot;
}

at::Tensor ReplayBuffer::inputs() const {
  return rows_.empty() ? at::Tensor() : at::stack(rows_);
}

int64_t ReplayBuffer::bytes() const {
  int64_t n = 0;
  for (const auto& r : rows_) n += static_cast<int64_t>(r.nbytes());
  return n;
}

at::Tensor ReplayBuffer::labels() const {
  return at::tensor(labels_, at::kLong);
}

std::map<int64_t, int64_t> ReplayBuffer::class_counts() const {
  std::map<int64_t, int64_t> counts;
  for (int64_t l : labels_) ++counts[l];
  return counts;
}

void ReplayBuffer::save(std::vector<std::pair<std::string, at::Tensor>>& tensors,
                        nlohmann::json& meta) const {
  if (!rows_.empty()) {
    tensors.emplace_back("inputs", inputs());
    tensors.emplace_back("labels", labels());
    tensors.emplace_back("scores", at::tensor(scores_, at::kDouble));
    tensors.emplace_back("positions", at::tensor(positions_, at::kLong));
  }
  nlohmann::json per_class = nlohmann::json::object();
  for (const auto& [c, n] : seen_per_class_) per_class[std::to_string(c)] = n;
  meta["seen"] = seen_;
  meta["seen_per_class"] = per_class;
}

void ReplayBuffer::load(const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                        const nlohmann::json& meta) {
  rows_.clear();
  labels_.clear();
  scores_.clear();
  positions_.clear();
  std::map<std::string, at::Tensor> t(tensors.begin(), tensors.end());
  seen_ = meta.value("seen", int64_t{0});
  seen_per_class_.clear();
  const auto per_class = meta.value("seen_per_class", nlohmann::json::object());
  for (const auto& [c, n] : per_class.items())
    seen_per_class_[std::stoll(c)] = n.get<int64_t>();
  if (!t.count("inputs")) return;
  SCULPT_CHECK(t.count("labels") && t.count("scores") && t.count("positions"),
               "compression pass replay: the saved buffer lacks labels, scores or positions");
  const auto x = t["inputs"];
  const auto y = t["labels"].to(at::kLong).contiguous();
  const auto s = t["scores"].to(at::kDouble).contiguous();
  const auto p = t["positions"].to(at::kLong).contiguous();
  SCULPT_CHECK(x.size(0) <= capacity_, "compression pass replay: the saved buffer holds ",
               x.size(0), " samples, more than replay.buffer = ", capacity_);
  for (int64_t i = 0; i < x.size(0); ++i) {
    rows_.push_back(x[i].clone());
    labels_.push_back(y[i].item<int64_t>());
    scores_.push_back(s[i].item<double>());
    positions_.push_back(p[i].item<int64_t>());
  }
}

namespace {

class ReplayPass final : public CompressionPass {
 public:
  explicit ReplayPass(const config::PassConfig& cfg)
      : CompressionPass(cfg), buffer_(options().buffer, options().policy) {}

  void attach(models::Model& /*model*/, const StepContext& ctx) override {
    rng_.seed(ctx.seed * 2654435761ull + 12345ull);
    loading_ = ctx.eval_loading;
  }

  // Streams the increment's rows and/or pseudo queries (or, source documents, its documents)
  // through the buffer in a random order (importance: scored by the per-sample loss of the
  // model as it is now).
  void on_increment_end(models::Model& model, const data::Dataset& seen,
                        const StepContext& ctx) override {
    const auto& o = options();
    auto x = seen.inputs(), y = seen.targets();
    if (y.dim() > 1) {
      // Token-sequence targets (seq2seq): each kept row is the input row followed by its target
      // row (on_batch splits them at the batch's input width); the first target token stands
      // for the class of class_balanced.
      SCULPT_CHECK(x.dim() == 2 && y.dim() == 2 && x.scalar_type() == y.scalar_type(),
                   "compression pass replay: targets of shape ", y.sizes(),
                   " need token rows as inputs (seq2seq)");
      x = at::cat({x, y}, 1);
      y = y.select(1, 0);
    }
    std::vector<double> scores(static_cast<size_t>(seen.size()), 0.0);
    if (o.policy == ReplayPolicy::importance) scores = losses(model, seen, ctx);
    if (o.source == ReplaySource::documents) {
      keep_documents(seen);
    } else if (o.source != ReplaySource::rows) {
      const auto& docs = seen.spec().documents;
      SCULPT_CHECK(docs, "compression pass replay: source: ",
                   config::spelling(kReplaySources, o.source),
                   " draws queries from the documents of a retrieval dataset (gr_synthetic, "
                   "gr_jsonl); this increment's data has none");
      const auto pq = make_pseudo_queries(*docs, {o.pseudo_queries, o.span_min, o.span_max}, rng_);
      const auto q = pq.rows.to(x.scalar_type());
      const int64_t width = docs->source_len + docs->targets.size(1);  // the input row's
      SCULPT_CHECK(q.size(1) == x.size(1), "compression pass replay: generated queries have ",
                   "rows of ", q.size(1), " tokens, the data's have ", x.size(1));
      const bool both = o.source == ReplaySource::both;
      x = both ? at::cat({x, q}) : q;
      y = both ? at::cat({y, q.select(1, width)}) : q.select(1, width);
      scores.assign(static_cast<size_t>(x.size(0)), 0.0);  // importance takes rows only (check)
      generated_ += q.size(0);
    }
    if (o.source != ReplaySource::documents) {
      const int64_t n = x.size(0);
      std::vector<int64_t> order(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) order[i] = i;
      for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[uniform(rng_, i + 1)]);
      const auto labels = y.to(at::kLong).contiguous();
      const auto* label = labels.data_ptr<int64_t>();
      for (int64_t i : order) buffer_.add(x[i], label[i], scores[i], rng_);
    }
    stacked_ = at::Tensor();
    if (ctx.run && ctx.run->writes_files()) {  // the buffer in the run directory too (rank 0)
      const auto state = state_dict();
      if (!state.tensors.empty())
        io::save_safetensors((ctx.run->dir() / "replay_buffer.safetensors").string(),
                             state.tensors);
      io::write_file_atomic((ctx.run->dir() / "replay_buffer.json").string(),
                            state.meta.dump(2) + "\n");
    }
    log::info("replay: buffer ", buffer_.size(), " of ", buffer_.seen(), " samples seen");
  }

  void on_batch(data::Batch& b, const StepContext& /*ctx*/) override {
    if (buffer_.size() == 0) return;
    const auto& o = options();
    const int64_t k = o.batch_size > 0
                          ? o.batch_size
                          : static_cast<int64_t>(std::llround(o.ratio * static_cast<double>(b.size())));
    if (k <= 0) return;
    if (!stacked_.defined()) {
      stacked_ = buffer_.inputs();
      labels_ = buffer_.labels();
      if (!loading_.normalize_mean.empty())
        stacked_ = data::normalize(stacked_, loading_.normalize_mean, loading_.normalize_std);
    }
    std::vector<int64_t> pick(static_cast<size_t>(k));
    for (auto& i : pick) i = uniform(rng_, buffer_.size());
    const auto idx = at::tensor(pick, at::kLong);
    const auto device = b.inputs.device();
    auto rows = (o.source == ReplaySource::documents ? spans_of(pick, b) : stacked_.index_select(0, idx))
                    .to(device, b.inputs.scalar_type());
    if (b.targets.dim() > 1) {  // input row + target row (token sequences)
      const int64_t w = b.inputs.size(1);
      b.inputs = at::cat({b.inputs, rows.narrow(1, 0, w)});
      b.targets = at::cat({b.targets, rows.narrow(1, w, rows.size(1) - w).to(b.targets.scalar_type())});
    } else {
      b.inputs = at::cat({b.inputs, rows});
      b.targets = at::cat({b.targets, labels_.index_select(0, idx).to(device)});
    }
    if (b.rows.defined())
      b.rows = at::cat({b.rows, at::full({k}, -1, b.rows.options())});
    replayed_ += k;
  }

  CallbackState state_dict() const override {
    CallbackState s;
    buffer_.save(s.tensors, s.meta);
    std::ostringstream rng;
    rng << rng_;
    s.meta["rng"] = rng.str();
    s.meta["replayed"] = replayed_;
    s.meta["generated"] = generated_;
    s.meta["doc_width"] = doc_width_;
    return s;
  }

  void load_state_dict(const CallbackState& state) override {
    buffer_.load(state.tensors, state.meta);
    std::istringstream rng(state.meta.value("rng", std::string()));
    if (!rng.str().empty()) rng >> rng_;
    replayed_ = state.meta.value("replayed", int64_t{0});
    generated_ = state.meta.value("generated", int64_t{0});
    doc_width_ = state.meta.value("doc_width", int64_t{0});
    stacked_ = at::Tensor();
  }

  std::string pipeline_limitation() const override {
    return "its buffer fills at the end of an increment; missing piece: the incremental "
           "trainer has no pipeline step strategy (the standard trainer never fills the buffer)";
  }
  nlohmann::json summary() const override {
    nlohmann::json counts = nlohmann::json::object();
    for (const auto& [c, n] : buffer_.class_counts()) counts[std::to_string(c)] = n;
    return {{"policy", config::spelling(kReplayPolicies, options().policy)},
            {"buffer", buffer_.size()},
            {"capacity", options().buffer},
            {"seen", buffer_.seen()},
            {"replayed", replayed_},
            {"source", config::spelling(kReplaySources, options().source)},
            {"generated", generated_},
            {"bytes", buffer_.bytes()},
            {"class_counts", counts}};
  }

 private:
  const ReplayOptions& options() const { return pass_options<ReplayOptions>(*this); }

  // Per-sample loss of the model on every row of `seen` (eval mode, no grad): cross-entropy
  // of a class target; of token targets (seq2seq, generative retrieval), the task's negative
  // log-likelihood of the whole target sequence (padding excluded).
  std::vector<double> losses(models::Model& model, const data::Dataset& seen,
                             const StepContext& ctx) const {
    torch::NoGradGuard no_grad;
    const bool was_training = model.is_training();
    model.eval();
    data::Loader loader(seen, 256, loading_);
    std::vector<double> out;
    data::Batch b;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(0);  // unused: targets are given
    while (loader.next(b)) {
      const auto outputs = model.forward(b.inputs.to(ctx.device)).to(at::kFloat);
      const auto targets = b.targets.to(ctx.device);
      at::Tensor l;
      if (targets.dim() > 1) {
        SCULPT_CHECK(ctx.task, "compression pass replay: policy importance on token targets "
                               "needs the run's task (its per-sample likelihood)");
        l = -ctx.task->sample_log_likelihood(outputs, targets, /*sampled=*/false, gen);
      } else {
        l = torch::nn::functional::cross_entropy(
            outputs, targets,
            torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
      }
      l = l.to(at::kCPU, at::kDouble).contiguous();
      out.insert(out.end(), l.data_ptr<double>(), l.data_ptr<double>() + l.numel());
    }
    model.train(was_training);
    return out;
  }

  // source documents: each document of the increment streams through the buffer as one row,
  // its tokens (padded, or cut, to the width of the first increment's longest document), then
  // its decoder input and target (the ID); the label is the ID's first token.
  void keep_documents(const data::Dataset& seen) {
    const auto& docs = seen.spec().documents;
    SCULPT_CHECK(docs, "compression pass replay: source: documents keeps the documents of a "
                       "retrieval dataset (gr_synthetic, gr_jsonl); this increment's data has none");
    if (doc_width_ == 0)
      for (const auto& text : docs->texts)
        doc_width_ = std::max(doc_width_, static_cast<int64_t>(text.size()));
    const int64_t t = docs->targets.size(1);
    std::vector<int64_t> order(static_cast<size_t>(docs->size()));
    for (int64_t i = 0; i < docs->size(); ++i) order[size_t(i)] = i;
    for (int64_t i = docs->size() - 1; i > 0; --i) std::swap(order[i], order[uniform(rng_, i + 1)]);
    for (int64_t d : order) {
      auto row = at::full({doc_width_ + 2 * t}, data::token::pad, at::kLong);
      const auto& text = docs->texts[size_t(d)];
      auto* p = row.data_ptr<int64_t>();
      for (int64_t i = 0; i < std::min<int64_t>(doc_width_, static_cast<int64_t>(text.size())); ++i)
        p[i] = text[size_t(i)];
      row.narrow(0, doc_width_, t).copy_(docs->decoder_inputs[d]);
      row.narrow(0, doc_width_ + t, t).copy_(docs->targets[d]);
      buffer_.add(row, docs->targets[d][0].item<int64_t>(), 0.0, rng_);
    }
    stacked_ = at::Tensor();
  }

  // source documents: for each picked document, a new random span of its tokens (span_min to
  // span_max long, at most the source length) as the input row, then its decoder input and target.
  at::Tensor spans_of(const std::vector<int64_t>& pick, const data::Batch& b) {
    const auto& o = options();
    const int64_t t = b.targets.size(1), s = b.inputs.size(1) - t;
    SCULPT_CHECK(s > 0 && stacked_.size(1) == doc_width_ + 2 * t,
                 "compression pass replay: source: documents needs the retrieval dataset's rows "
                 "(source, decoder input, target)");
    const int64_t hi = std::min(o.span_max > 0 ? o.span_max : s, s);
    const int64_t lo = std::min(o.span_min > 0 ? o.span_min : hi, hi);
    auto out = at::full({static_cast<int64_t>(pick.size()), s + 2 * t}, data::token::pad, at::kLong);
    const auto kept = stacked_.to(at::kLong).contiguous();
    for (size_t r = 0; r < pick.size(); ++r) {
      const auto row = kept[pick[r]];
      const auto* p = row.data_ptr<int64_t>();
      int64_t len = 0;
      while (len < doc_width_ && p[len] != data::token::pad) ++len;
      if (len == 0) continue;  // an empty document: padding only, as its rows were
      const int64_t span = std::min(len, lo + uniform(rng_, hi - lo + 1));
      const int64_t start = uniform(rng_, len - span + 1);
      auto o_row = out[static_cast<int64_t>(r)];
      o_row.narrow(0, 0, span).copy_(row.narrow(0, start, span));
      o_row.narrow(0, s, 2 * t).copy_(row.narrow(0, doc_width_, 2 * t));
    }
    generated_ += static_cast<int64_t>(pick.size());
    return out;
  }

  ReplayBuffer buffer_;
  int64_t doc_width_ = 0;  // source documents: the kept rows' token width
  std::mt19937_64 rng_;
  data::LoaderOptions loading_;  // how evaluation loads (normalizes) rows
  at::Tensor stacked_, labels_;  // the buffer as tensors, normalized (rebuilt when it changes)
  int64_t replayed_ = 0;
  int64_t generated_ = 0;  // pseudo queries made (streamed through the buffer)
};

}  // namespace

std::unique_ptr<CompressionPass> make_replay_pass(const config::PassConfig& cfg) {
  return std::make_unique<ReplayPass>(cfg);
}

}  // namespace sculpt::compression
