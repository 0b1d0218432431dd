// Pseudo-query replay (replay `source: pseudo_queries | both`): generated queries are spans of
// their documents and carry their documents' IDs; the buffer holds so many queries per document
// whatever number of rows the increment had; the buffer resumes exactly from the pass state;
// bad option values are named with their key (and exit 2 from the command line).
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <set>

#include "compression/passes/continual/pseudo_queries.h"
#include "core/config/config.h"
#include "core/data/dataset.h"
#include "core/data/gr.h"
#include "tests/support/attached_pass.h"
#include "tests/support/load_dataset.h"
#include "tests/support/process.h"

namespace data = sculpt::data;
namespace token = sculpt::data::token;
using data::DataPart;
using sculpt::test::load_dataset;

namespace {
const std::string kData =
    "{name: gr_synthetic, docs: 60, new_docs: 6, updates: 2, topics: 4, vocab: 200, "
    "doc_len: 16, query_len: 8, id_branch: 8, id_reserve: 0.25, id_dims: 0, seed: 3";

// A run config with a tiny seq2seq model, the data `data_yaml` and one replay pass.
sculpt::config::Config replay_config(const std::string& data_yaml, const std::string& replay) {
  sculpt::cli::register_builtins();  // the registries the config is checked against
  return sculpt::config::Config::parse(
      "run: {device: cpu, seed: 5}\n"
      "data: " + data_yaml + "\n"
      "model: {name: transformer_seq2seq, d_model: 16, heads: 2, layers: 1, ff: 32}\n"
      "task: {name: generative_retrieval}\n"
      "compression: [{name: replay, " + replay + "}]\n");
}

bool same_state(const sculpt::trainers::CallbackState& a,
                const sculpt::trainers::CallbackState& b) {
  if (a.meta != b.meta || a.tensors.size() != b.tensors.size()) return false;
  for (size_t i = 0; i < a.tensors.size(); ++i)
    if (a.tensors[i].first != b.tensors[i].first ||
        !torch::equal(a.tensors[i].second, b.tensors[i].second))
      return false;
  return true;
}
}  // namespace

TEST_CASE("pseudo queries are spans of their documents and carry their documents' IDs",
          "[gr][replay]") {
  const auto ds = load_dataset(kData + ", documents: old}", DataPart::train);
  const auto& docs = *ds->spec().documents;
  REQUIRE(docs.size() == 60);
  data::GrSyntheticOptions o;
  o.docs = 60;
  o.new_docs = 6;
  o.updates = 2;
  o.topics = 4;
  o.vocab = 200;
  o.doc_len = 16;
  o.seed = 3;
  const auto corpus = data::generate_gr_corpus(o);
  std::mt19937_64 rng(1);
  const auto pq = sculpt::compression::make_pseudo_queries(docs, {3, 3, 6}, rng);
  const int64_t s = docs.source_len, t = docs.targets.size(1);
  REQUIRE(pq.rows.size(0) == 60 * 3);
  REQUIRE(pq.rows.size(1) == s + 2 * t);
  std::set<int64_t> lengths;
  for (int64_t r = 0; r < pq.rows.size(0); ++r) {
    const int64_t d = pq.doc[size_t(r)];
    CHECK(d == r / 3);
    const auto row = pq.rows[r].contiguous();
    const auto* p = row.data_ptr<int64_t>();
    data::TokenSeq query;
    for (int64_t i = 0; i < s && p[i] != token::pad; ++i) query.push_back(p[i]);
    for (int64_t i = static_cast<int64_t>(query.size()); i < s; ++i) CHECK(p[i] == token::pad);
    lengths.insert(static_cast<int64_t>(query.size()));
    CHECK((query.size() >= 3 && query.size() <= 6));
    CHECK(static_cast<int64_t>(query.size()) == pq.length[size_t(r)]);
    // A span of the generated document's words, at the recorded start.
    const auto& words = corpus.docs[size_t(docs.corpus_doc[size_t(d)])];
    for (size_t i = 0; i < query.size(); ++i)
      CHECK(query[i] == token::first_word + words[size_t(pq.start[size_t(r)]) + i]);
    // The decoder input and target of the document's own rows (its first index window).
    CHECK(torch::equal(row.narrow(0, s, t), ds->inputs()[2 * d].narrow(0, s, t)));
    CHECK(torch::equal(row.narrow(0, s + t, t), ds->targets()[2 * d]));
  }
  CHECK(lengths == std::set<int64_t>{3, 4, 5, 6});
  // Default spans: the dataset's query length.
  const auto whole = sculpt::compression::make_pseudo_queries(docs, {1, 0, 0}, rng);
  for (int64_t len : whole.length) CHECK(len == 8);
}

TEST_CASE("pseudo-query replay: the buffer does not depend on the number of stored rows",
          "[gr][replay]") {
  // The same 60 documents as 2 or 9 index windows each (every 8 or every 1 token).
  const auto sparse = load_dataset(kData + ", documents: old, index_stride: 8}", DataPart::train);
  const auto dense = load_dataset(kData + ", documents: old, index_stride: 1}", DataPart::train);
  REQUIRE(dense->size() > 2 * sparse->size());
  auto buffer_after = [](const data::Dataset& ds, const std::string& source) {
    auto a = sculpt::test::attach_first_pass(
        replay_config(kData + ", documents: old}", "buffer: 100000, source: " + source +
                                                        ", pseudo_queries: 3"));
    a.pass().on_increment_end(a.model(), ds, a.ctx);
    return a.pass().summary();
  };
  for (const auto* ds : {sparse.get(), dense.get()}) {
    const auto s = buffer_after(*ds, "pseudo_queries");
    CHECK(s["buffer"] == 60 * 3);
    CHECK(s["generated"] == 60 * 3);
    CHECK(s["source"] == "pseudo_queries");
    CHECK(buffer_after(*ds, "both")["buffer"] == ds->size() + 60 * 3);
    CHECK(buffer_after(*ds, "rows")["buffer"] == ds->size());
  }
  CHECK(buffer_after(*sparse, "pseudo_queries")["bytes"] ==
        buffer_after(*dense, "pseudo_queries")["bytes"]);
  // A capacity below the queries: the buffer is full, a reservoir over them.
  auto a = sculpt::test::attach_first_pass(
      replay_config(kData + ", documents: old}", "buffer: 50, source: pseudo_queries"));
  a.pass().on_increment_end(a.model(), *dense, a.ctx);
  CHECK(a.pass().summary()["buffer"] == 50);
  CHECK(a.pass().summary()["seen"] == 60 * 4);
}

TEST_CASE("pseudo-query replay resumes with an identical buffer", "[gr][replay]") {
  const auto old = load_dataset(kData + ", documents: old}", DataPart::train);
  const auto u1 = load_dataset(kData + ", documents: update1}", DataPart::train);
  const auto u2 = load_dataset(kData + ", documents: update2}", DataPart::train);
  for (const char* source : {"pseudo_queries", "both"}) {
    INFO(source);
    const auto cfg = replay_config(kData + ", documents: old}",
                                   std::string("buffer: 100, source: ") + source +
                                       ", pseudo_queries: 2, span_min: 4");
    // One pass over three increments; another that stops after the first, is saved, and is
    // loaded into a fresh pass that goes on.
    auto whole = sculpt::test::attach_first_pass(cfg);
    auto first = sculpt::test::attach_first_pass(cfg);
    auto second = sculpt::test::attach_first_pass(cfg);
    whole.pass().on_increment_end(whole.model(), *old, whole.ctx);
    first.pass().on_increment_end(first.model(), *old, first.ctx);
    const auto saved = first.pass().state_dict();
    CHECK(same_state(saved, whole.pass().state_dict()));
    sculpt::trainers::CallbackState copy;
    copy.meta = nlohmann::json::parse(saved.meta.dump());
    for (const auto& [name, t] : saved.tensors) copy.tensors.emplace_back(name, t.clone());
    second.pass().load_state_dict(copy);
    CHECK(same_state(second.pass().state_dict(), saved));
    for (const auto* ds : {u1.get(), u2.get()}) {
      whole.pass().on_increment_end(whole.model(), *ds, whole.ctx);
      second.pass().on_increment_end(second.model(), *ds, second.ctx);
    }
    CHECK(same_state(second.pass().state_dict(), whole.pass().state_dict()));
    CHECK(whole.pass().summary()["buffer"] == 100);
    // Queries of every increment's documents went through it.
    CHECK(whole.pass().summary()["generated"] == (60 + 6 + 6) * 2);
  }
}

TEST_CASE("replay rejects bad pseudo-query options, naming the key", "[gr][replay]") {
  auto error_of = [](const std::string& replay) -> std::string {
    try {
      replay_config(kData + "}", replay);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "no error";
  };
  CHECK_THAT(error_of("source: queries"),
             Catch::Contains("compression[0].source") && Catch::Contains("pseudo_queries"));
  CHECK_THAT(error_of("source: pseudo_queries, pseudo_queries: 0"),
             Catch::Contains("compression[0].pseudo_queries"));
  CHECK_THAT(error_of("source: both, span_min: 6, span_max: 4"),
             Catch::Contains("compression[0].span_min"));
  CHECK_THAT(error_of("source: pseudo_queries, span_max: -1"),
             Catch::Contains("compression[0].span_max"));
  CHECK_THAT(error_of("source: pseudo_queries, policy: importance"),
             Catch::Contains("compression[0].policy"));
  // From the command line: exit code 2, the key named.
  const auto dir = sculpt::test::temp_dir("pseudo_replay_bad");
  sculpt::test::write_text(dir + "/c.yaml",
                           "run: {device: cpu, output_dir: " + dir + "/run}\n"
                           "data: " + kData + "}\n"
                           "model: {name: transformer_seq2seq, d_model: 16, heads: 2}\n"
                           "task: {name: generative_retrieval}\n"
                           "trainer: {name: incremental}\n"
                           "increments: [{name: old}]\n"
                           "compression: [{name: replay, source: pseudo_queries}]\n");
  const auto r = sculpt::test::run_process(std::string(SCULPT_BIN) + " train " + dir +
                                           "/c.yaml compression[0].pseudo_queries=-2");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("compression[0].pseudo_queries"));
  // A dataset without documents (no retrieval corpus): a user error naming the source.
  auto a = sculpt::test::attach_first_pass(
      replay_config(kData + ", documents: old}", "source: pseudo_queries"));
  const auto ds = load_dataset(kData + ", documents: old}", DataPart::train);
  data::DataSpec plain = ds->spec();
  plain.documents = nullptr;
  const data::Dataset bare(ds->inputs(), ds->targets(), plain);
  CHECK_THROWS_WITH(a.pass().on_increment_end(a.model(), bare, a.ctx),
                    Catch::Contains("source: pseudo_queries"));
}

TEST_CASE("importance replay on token targets keeps the rows of highest sequence loss",
          "[gr][replay]") {
  // policy importance scores each row by the negative log-likelihood of its whole target
  // sequence (padding excluded); here against that formula computed from the model's logits.
  const auto ds = load_dataset(kData + ", documents: old}", DataPart::train);
  auto a = sculpt::test::attach_first_pass(
      replay_config(kData + ", documents: old}", "buffer: 20, policy: importance"));
  a.pass().on_increment_end(a.model(), *ds, a.ctx);
  torch::NoGradGuard no_grad;
  a.model().eval();
  const auto x = ds->inputs(), y = ds->targets();
  const auto logp = torch::log_softmax(a.model().forward(x).to(at::kDouble), -1);
  const auto real = y.ne(token::pad);
  const auto picked = logp.gather(2, y.clamp_min(0).unsqueeze(2)).squeeze(2);
  const auto nll = -(picked * real.to(at::kDouble)).sum(1);  // [rows]
  REQUIRE(nll.size(0) == ds->size());
  const auto state = a.pass().state_dict();
  at::Tensor kept, scores;
  for (const auto& [name, t] : state.tensors) {
    if (name == "inputs") kept = t;
    if (name == "scores") scores = t.to(at::kDouble);
  }
  REQUIRE(kept.defined());
  REQUIRE(scores.numel() == 20);
  // The 20 highest of all rows' losses, and each kept row's score is its own row's loss.
  const auto top = std::get<0>(nll.topk(20));
  // The pass computes in float32 (sums of five token terms near 5 each), this check in double.
  CHECK(torch::allclose(std::get<0>(scores.sort(0, true)), top, 1e-5, 1e-5));
  const auto rows = at::cat({x, y}, 1);
  for (int64_t i = 0; i < kept.size(0); ++i) {
    const auto same = rows.eq(kept[i].to(rows.scalar_type())).all(1).nonzero();
    REQUIRE(same.size(0) >= 1);
    const double want = nll[same[0][0].item<int64_t>()].item<double>();
    CHECK(std::abs(want - scores[i].item<double>()) < 1e-5 * std::max(1.0, std::abs(want)));
  }
}

TEST_CASE("document replay keeps documents and replays a new span of one each time",
          "[gr][replay]") {
  // source: documents: the buffer holds each document once (its tokens and its ID); every
  // replayed row is a random span of a kept document (span_min..span_max tokens) with that
  // document's decoder input and ID target, drawn afresh at each step; the state resumes it.
  const auto ds = load_dataset(kData + ", documents: old}", DataPart::train);
  const auto& docs = *ds->spec().documents;
  const auto cfg = replay_config(kData + ", documents: old}",
                                 "buffer: 100, batch_size: 300, source: documents, span_min: 3, "
                                 "span_max: 6");
  auto a = sculpt::test::attach_first_pass(cfg);
  a.pass().on_increment_end(a.model(), *ds, a.ctx);
  CHECK(a.pass().summary()["buffer"] == 60);
  CHECK(a.pass().summary()["seen"] == 60);
  const int64_t t = docs.targets.size(1), s = docs.source_len;
  auto replay_once = [&](sculpt::test::AttachedPass& p) {
    data::Batch b;
    b.inputs = ds->inputs().narrow(0, 0, 4);
    b.targets = ds->targets().narrow(0, 0, 4);
    p.pass().on_batch(b, p.ctx);
    REQUIRE(b.inputs.size(0) == 4 + 300);
    REQUIRE(b.targets.size(0) == 4 + 300);
    return std::make_pair(b.inputs.narrow(0, 4, 300), b.targets.narrow(0, 4, 300));
  };
  const auto [in1, tg1] = replay_once(a);
  std::set<std::pair<int64_t, int64_t>> spans;  // (document, start)
  std::set<int64_t> lengths;
  for (int64_t r = 0; r < 300; ++r) {
    const auto row = in1[r].contiguous();
    const auto* p = row.data_ptr<int64_t>();
    data::TokenSeq query;
    for (int64_t i = 0; i < s && p[i] != token::pad; ++i) query.push_back(p[i]);
    lengths.insert(static_cast<int64_t>(query.size()));
    int64_t doc = -1;
    for (int64_t d = 0; d < docs.size() && doc < 0; ++d)
      if (torch::equal(tg1[r], docs.targets[d])) doc = d;
    REQUIRE(doc >= 0);  // the ID of a kept document
    CHECK(torch::equal(row.narrow(0, s, t), docs.decoder_inputs[doc]));
    const auto& text = docs.texts[size_t(doc)];
    const auto at = std::search(text.begin(), text.end(), query.begin(), query.end());
    REQUIRE(at != text.end());  // a span of that document
    spans.emplace(doc, at - text.begin());
  }
  CHECK(lengths == std::set<int64_t>{3, 4, 5, 6});
  CHECK(spans.size() > 150);  // 300 draws over 60 documents x ~27 starts: mostly distinct
  // Drawn afresh: the next step replays other spans. A pass resumed from the state replays
  // exactly what this one does next.
  auto resumed = sculpt::test::attach_first_pass(cfg);
  resumed.pass().load_state_dict(a.pass().state_dict());
  const auto [in2, tg2] = replay_once(a);
  const auto [in3, tg3] = replay_once(resumed);
  CHECK_FALSE(torch::equal(in1, in2));
  CHECK(torch::equal(in2, in3));
  CHECK(torch::equal(tg2, tg3));
  CHECK(a.pass().summary()["generated"] == 600);
}
