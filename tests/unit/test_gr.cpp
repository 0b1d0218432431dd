// Generative retrieval: the synthetic corpus (deterministic, disjoint splits), semantic IDs
// (recursive k-means: one prefix-free path per document, topics kept together), the ID trie,
// new documents (nearest neighbours, local splits, no ID reused), decoding constrained to the
// trie (only valid IDs; equal to scoring every ID by brute force), Hits@k / MRR@k against
// hand-computed values, and gr_jsonl's errors naming the file and line.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <set>

#include "cli/app.h"
#include "core/data/dataset.h"
#include "core/data/docids.h"
#include "core/data/gr.h"
#include "core/error.h"
#include "core/models/model.h"
#include "core/tasks/decoding.h"
#include "core/tasks/task.h"
#include "tests/support/load_dataset.h"
#include "tests/support/process.h"

namespace data = sculpt::data;
namespace token = sculpt::data::token;
using data::DataPart;
using sculpt::test::load_dataset;

namespace {
const std::string& kSmall = sculpt::test::kSmallGr;

std::string error_of(const std::string& yaml, DataPart part = DataPart::train) {
  return sculpt::test::load_error(yaml, part);
}

data::TokenSeq row_tokens(const at::Tensor& t) {
  auto c = t.contiguous();
  return data::TokenSeq(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

// The ID of a target row: its tokens up to and including eos.
data::TokenSeq target_id(const at::Tensor& row) {
  data::TokenSeq out;
  for (auto t : row_tokens(row)) {
    out.push_back(t);
    if (t == token::eos) break;
  }
  return out;
}
}  // namespace

TEST_CASE("gr_synthetic is deterministic; documents do not depend on the corpus size",
          "[gr][data]") {
  data::GrSyntheticOptions o;
  o.docs = 50;
  o.new_docs = 5;
  o.topics = 4;
  o.vocab = 200;
  o.seed = 7;
  auto a = data::generate_gr_corpus(o), b = data::generate_gr_corpus(o);
  REQUIRE(a.docs.size() == 55);
  CHECK(a.docs == b.docs);
  CHECK(a.topic == b.topic);
  REQUIRE(a.queries.size() == b.queries.size());
  for (size_t i = 0; i < a.queries.size(); ++i) CHECK(a.queries[i].tokens == b.queries[i].tokens);
  o.docs = 40;
  o.new_docs = 0;
  auto c = data::generate_gr_corpus(o);
  for (size_t d = 0; d < 40; ++d) CHECK(c.docs[d] == a.docs[d]);
  o.seed = 8;
  CHECK(data::generate_gr_corpus(o).docs[0] != a.docs[0]);
  // Topic words: a document's tokens mostly come from its topic's head (Zipf ranks).
  std::map<int64_t, std::set<int64_t>> topic_words;
  for (size_t d = 0; d < a.docs.size(); ++d)
    topic_words[a.topic[d]].insert(a.docs[d].begin(), a.docs[d].end());
  CHECK(topic_words.size() == 4);
}

TEST_CASE("gr_synthetic splits every document's queries into disjoint train, val and test",
          "[gr][data]") {
  data::GrSyntheticOptions o;
  o.docs = 30;
  o.queries_per_doc = 5;
  o.vocab = 100;
  o.topics = 3;
  auto c = data::generate_gr_corpus(o);
  std::map<int64_t, std::map<int, int>> per_doc;
  for (const auto& q : c.queries) {
    ++per_doc[q.doc][q.split];
    CHECK(!q.tokens.empty());
    CHECK(q.tokens.size() <= size_t(o.query_len));
  }
  REQUIRE(per_doc.size() == 30);
  for (auto& [doc, splits] : per_doc) {
    CHECK(splits[0] == 3);
    CHECK(splits[1] == 1);
    CHECK(splits[2] == 1);
  }
  // Through the dataset: train rows = 2 chunks per document + train + val queries; the val
  // rows are the validation queries; the test part holds one query per document.
  const std::string yaml = kSmall + ", documents: old, queries_per_doc: 5}";
  auto train = load_dataset(yaml, DataPart::train);
  auto test = load_dataset(yaml, DataPart::test);
  CHECK(train->size() == 120 * (2 + 3 + 1));
  REQUIRE(train->val_rows().defined());
  CHECK(train->val_rows().numel() == 120);
  CHECK(test->size() == 120);
  auto split = data::split_dataset(*train, 0.1, 0);
  CHECK(split.val.size() == 120);
  CHECK(split.train.size() == 120 * 5);
  // Disjoint rows: no val row index among the train rows.
  auto val_idx = train->val_rows();
  auto is_val = torch::zeros({train->size()}, torch::kBool).index_fill_(0, val_idx, true);
  CHECK(is_val.sum().item<int64_t>() == 120);
  // Every row's target is the ID of a document, and the DataSpec's trie holds it.
  const auto& trie = *train->spec().valid_targets;
  CHECK(trie.size() == 132);  // old and new documents
  for (int64_t r = 0; r < test->size(); r += 7) CHECK(trie.contains(target_id(test->targets()[r])));
  // More test queries per document: the documents and the other queries stay as they were,
  // query 0 stays the first test query, and the extra ones are new spans of the same document.
  auto o3 = o;
  o3.test_queries = 3;
  auto c3 = data::generate_gr_corpus(o3);
  REQUIRE(c3.queries.size() == c.queries.size() + 2 * 30);
  CHECK(c3.docs == c.docs);
  std::vector<const data::GrQuery*> kept;
  std::map<int64_t, int> extra_tests;
  for (const auto& q : c3.queries) {
    const bool extra = q.split == 2 && extra_tests[q.doc]++ > 0;
    if (!extra) kept.push_back(&q);
  }
  REQUIRE(kept.size() == c.queries.size());
  for (size_t i = 0; i < kept.size(); ++i) {
    CHECK(kept[i]->tokens == c.queries[i].tokens);
    CHECK(kept[i]->split == c.queries[i].split);
  }
  for (auto& [doc, n] : extra_tests) CHECK(n == 3);
  CHECK(load_dataset(kSmall + ", documents: old, test_queries: 4}", DataPart::test)->size() ==
        120 * 4);
  // Overlapping index windows: a 16-token document in 8-token windows every 3 tokens starts
  // windows at 0, 3, 6 and 8 (the last one ends at the document's end): 4 rows, not 2.
  CHECK(load_dataset(kSmall + ", documents: old, index_stride: 3}", DataPart::train)->size() ==
        120 * (4 + 2 + 1));
  auto nw = load_dataset(kSmall + ", documents: new}", DataPart::test);
  CHECK(nw->size() == 12);
  CHECK(nw->spec().vocab_size == train->spec().vocab_size);
  CHECK(nw->spec().input_shape == train->spec().input_shape);
}

TEST_CASE("IdTrie holds prefix-free sequences and lists the allowed next tokens", "[gr][trie]") {
  data::IdTrie t;
  t.insert({10, 20, 3});
  t.insert({10, 21, 3});
  t.insert({11, 3});
  CHECK(t.size() == 3);
  CHECK(t.allowed(0) == std::vector<int64_t>{10, 11});
  CHECK(t.allowed(t.walk({10})) == std::vector<int64_t>{20, 21});
  CHECK(t.allowed(t.walk({10, 20})) == std::vector<int64_t>{3});
  CHECK(t.allowed(t.walk({10, 20, 3})).empty());
  CHECK(t.walk({12}) == -1);
  CHECK(t.contains({11, 3}));
  CHECK_FALSE(t.contains({10, 20}));
  CHECK(t.is_end(t.walk({11, 3})));
  CHECK_THROWS_WITH(t.insert({11, 3}), Catch::Contains("two documents"));
  CHECK_THROWS_WITH(t.insert({10, 20, 3, 5}), Catch::Contains("prefix-free"));
  CHECK_THROWS_WITH(t.insert({10}), Catch::Contains("prefix"));
  CHECK(t.size() == 3);
}

TEST_CASE("semantic IDs: one valid prefix-free path per document, topics kept together",
          "[gr][ids]") {
  data::GrSyntheticOptions o;
  o.docs = 400;
  o.topics = 4;
  o.vocab = 400;
  o.seed = 1;
  auto c = data::generate_gr_corpus(o);
  auto vec = data::tfidf_vectors(c.docs, 400, 400, 0, 0);
  CHECK(vec.norm(2, {1}).sub(1).abs().max().item<double>() < 1e-5);
  data::SemanticIdOptions so;
  so.branch = 10;
  so.reserve = 0.2;  // 8 clusters / leaf documents per node
  so.max_depth = 5;
  data::IdTree tree(vec, so);
  REQUIRE(tree.paths().size() == 400);
  data::IdTrie trie;
  std::set<data::DigitPath> seen;
  std::map<int64_t, std::map<int64_t, int>> first_digit_topics;  // digit -> topic -> docs
  for (size_t d = 0; d < 400; ++d) {
    const auto& p = tree.paths()[d];
    REQUIRE(!p.empty());
    CHECK(static_cast<int64_t>(p.size()) <= so.max_depth);
    for (auto digit : p) CHECK((digit >= 0 && digit < so.fill()));  // reserved slots unused
    CHECK(seen.insert(p).second);
    trie.insert(data::semantic_tokens(p, 100, so.branch));  // throws unless prefix-free
    ++first_digit_topics[p[0]][c.topic[d]];
  }
  // Purity of the first level: most documents of a first-level cluster share its topic
  // (chance would be ~1/4).
  int majority = 0;
  for (auto& [digit, topics] : first_digit_topics) {
    int best = 0;
    for (auto& [t, n] : topics) best = std::max(best, n);
    majority += best;
  }
  CHECK(majority > 0.8 * 400);
  // Position-specific tokens: digit d at level l is base + l * branch + d.
  CHECK(data::semantic_tokens({3, 0, 7}, 100, 10) == data::TokenSeq{103, 110, 127, token::eos});
  // Too shallow a tree is an error naming the key.
  so.max_depth = 2;
  CHECK_THROWS_WITH(data::IdTree(vec, so), Catch::Contains("max_depth"));
}

TEST_CASE("semantic IDs: k-means clusters too large for the digits left are rebalanced",
          "[gr][ids]") {
  // 36 copies of one vector and 4 others: k-means puts the copies in one cluster, which 2
  // digits of 4 slots (16 documents) cannot hold; the capacitated assignment spreads them.
  torch::manual_seed(2);
  auto v = torch::zeros({40, 8});
  v.narrow(0, 0, 36).select(1, 0).fill_(1.0);
  auto rest = torch::randn({4, 8});
  v.narrow(0, 36, 4).copy_(rest / rest.norm(2, {1}, true));
  data::SemanticIdOptions so;
  so.branch = 4;
  so.reserve = 0.0;
  so.max_depth = 3;  // room for 4^3 = 64 documents
  data::IdTree tree(v, so);
  std::set<data::DigitPath> seen;
  data::IdTrie trie;
  for (const auto& p : tree.paths()) {
    CHECK(static_cast<int64_t>(p.size()) <= so.max_depth);
    CHECK(seen.insert(p).second);
    trie.insert(data::semantic_tokens(p, 10, so.branch));
  }
  CHECK(seen.size() == 40);
  // More documents than the digits can hold at all: an error naming the key.
  CHECK_THROWS_WITH(data::IdTree(torch::cat({v, v}), so), Catch::Contains("max_depth"));
  // The default corpus (20000 documents, 2000 new, the default ID keys) gets IDs; its
  // unbalanced k-means once left 19 documents under one prefix at max_depth.
  auto d = load_dataset("{name: gr_synthetic, new_docs: 2000, documents: new, eval_docs: 10}",
                        DataPart::test);
  CHECK(d->spec().valid_targets->size() == 22000);
  CHECK(d->size() == 10);
}

TEST_CASE("atomic IDs: one token per document", "[gr][ids]") {
  auto d = load_dataset(kSmall + ", ids: atomic, documents: old}", DataPart::test);
  const auto& trie = *d->spec().valid_targets;
  CHECK(trie.size() == 132);
  CHECK(trie.allowed(0).size() == 132);
  CHECK(d->targets().size(1) == 2);  // the token and eos
  CHECK(d->spec().vocab_size == token::first_word + 300 + 132);
}

TEST_CASE("new documents go next to their neighbours; full leaves split; no ID is reused",
          "[gr][ids]") {
  torch::manual_seed(5);
  auto base = torch::randn({40, 16});
  base = base / base.norm(2, {1}, true);
  data::SemanticIdOptions so;
  so.branch = 4;
  so.reserve = 0.5;  // 2 of 4 slots filled at build time
  so.max_depth = 16;
  data::IdTree tree(base, so);
  // A copy of document 0 lands in document 0's leaf (same prefix), in a fresh slot.
  const auto p0 = tree.paths()[0];
  const int64_t twin = tree.add(base[0]);
  const auto& pt = tree.paths()[size_t(twin)];
  CHECK(pt.size() == p0.size());
  CHECK(std::equal(p0.begin(), p0.end() - 1, pt.begin()));
  CHECK(pt != p0);
  // Retire a document; then add many: every path stays unique and prefix-free, the retired
  // one is never handed out again, and full leaves were split.
  tree.remove(3);
  CHECK(tree.removed(3));
  const auto retired = tree.paths()[3];
  int64_t added = 0;
  try {
    for (int i = 0; i < 400; ++i, ++added) {
      auto v = base[i % 40] + 0.3 * torch::randn({16});
      tree.add(v / v.norm());
    }
  } catch (const sculpt::UserError& e) {
    CHECK_THAT(e.what(), Catch::Contains("no reserved slot"));  // the ID space is finite
  }
  CHECK(added > 20);
  CHECK(tree.leaf_splits() > 0);
  std::set<data::DigitPath> seen;
  data::IdTrie trie;
  for (size_t d = 0; d < tree.paths().size(); ++d) {
    const auto& p = tree.paths()[d];
    if (p.empty()) continue;  // the document whose add failed
    CHECK(seen.insert(p).second);
    for (auto digit : p) CHECK((digit >= 0 && digit < so.branch));
    trie.insert(data::semantic_tokens(p, 10, so.branch));
    if (d != 3) CHECK(p != retired);
  }
  CHECK(static_cast<int64_t>(seen.size()) >= 40 + 1 + added);
}

TEST_CASE("constrained beam search emits only valid IDs and equals brute-force scoring",
          "[gr][decoding]") {
  sculpt::cli::register_builtins();
  torch::manual_seed(0);
  // A tiny corpus: 12 documents, every ID enumerable.
  auto ds = load_dataset(
      "{name: gr_synthetic, docs: 12, topics: 2, vocab: 40, doc_len: 8, query_len: 4, "
      "id_branch: 4, id_reserve: 0.5, id_dims: 0}",
      DataPart::test);
  const auto& spec = ds->spec();
  const auto& trie = *spec.valid_targets;
  auto cfg = sculpt::config::Config::parse(
      "model: {name: transformer_seq2seq, d_model: 16, heads: 2, layers: 1, ff: 32}\n"
      "data: {name: gr_synthetic}\n");
  auto model = sculpt::models::model_registry().create("transformer_seq2seq", cfg.model, spec);
  model->eval();
  torch::NoGradGuard ng;
  sculpt::tasks::Forward fwd = [&](const at::Tensor& x) { return model->forward(x); };
  const int64_t s = spec.source_len, t = ds->targets().size(1);
  auto source = ds->inputs().narrow(1, 0, s).narrow(0, 0, 3);
  // All IDs, enumerated from the trie.
  std::vector<data::TokenSeq> ids;
  std::function<void(int64_t, data::TokenSeq)> all = [&](int64_t node, data::TokenSeq prefix) {
    if (trie.is_end(node)) ids.push_back(prefix);
    for (auto tok : trie.allowed(node)) {
      auto p = prefix;
      p.push_back(tok);
      all(trie.child(node, tok), p);
    }
  };
  all(0, {});
  REQUIRE(ids.size() == 12);
  // Unconstrained beams of a random model are mostly not IDs; constrained ones always are.
  auto free_beams = sculpt::tasks::beam_search(fwd, source, t, 5);
  auto beams = sculpt::tasks::beam_search(fwd, source, t, 16, &trie);
  int free_valid = 0;
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t k = 0; k < 5; ++k) free_valid += trie.contains(target_id(free_beams.tokens[b][k]));
  CHECK(free_valid < 15);
  for (int64_t b = 0; b < 3; ++b) {
    // Brute force: teacher-forced log-probability of every ID.
    std::vector<std::pair<double, data::TokenSeq>> scored;
    for (const auto& id : ids) {
      auto dec = at::full({1, t}, token::pad, at::kLong);
      dec[0][0] = token::bos;
      for (size_t i = 0; i + 1 < id.size(); ++i) dec[0][long(i) + 1] = id[i];
      auto logp = fwd(at::cat({source.narrow(0, b, 1), dec}, 1))[0].log_softmax(-1);
      double sc = 0;
      for (size_t i = 0; i < id.size(); ++i) sc += logp[long(i)][id[i]].item<double>();
      scored.emplace_back(sc, id);
    }
    std::sort(scored.begin(), scored.end(), [](auto& x, auto& y) { return x.first > y.first; });
    for (int64_t k = 0; k < 16; ++k) {
      const double score = beams.scores[b][k].item<double>();
      if (k >= 12) {
        CHECK(std::isinf(score));  // only 12 IDs exist
        continue;
      }
      const auto id = target_id(beams.tokens[b][k]);
      CHECK(trie.contains(id));
      CHECK(id == scored[size_t(k)].second);
      CHECK(score == Approx(scored[size_t(k)].first).margin(1e-4));
    }
  }
}

TEST_CASE("Hits@k and MRR@k equal hand-computed values", "[gr][metrics]") {
  sculpt::cli::register_builtins();
  // Three one-token IDs (tokens 10, 11, 12) + eos. The "model" prefers, for source row r,
  // the tokens in the order given below; after a token, eos.
  data::DataSpec spec;
  spec.vocab_size = 13;
  spec.source_len = 1;
  spec.input_shape = {3};
  auto trie = std::make_shared<data::IdTrie>();
  for (int64_t id : {10, 11, 12}) trie->insert({id, token::eos});
  spec.valid_targets = trie;
  const std::vector<std::vector<int64_t>> order = {{10, 11, 12}, {12, 10, 11}, {11, 12, 10}, {5, 12, 11}};
  sculpt::tasks::Forward fwd = [&](const at::Tensor& x) {
    const int64_t n = x.size(0), len = x.size(1) - 1;
    auto logits = at::full({n, len, 13}, -20.0);
    for (int64_t i = 0; i < n; ++i) {
      const auto& o = order[size_t(x[i][0].item<int64_t>())];
      logits[i][0][o[0]] = 3.0;
      logits[i][0][o[1]] = 2.0;
      logits[i][0][o[2]] = 1.0;
      if (len > 1) logits[i][1][token::eos] = 5.0;
    }
    return logits;
  };
  // Targets: row 0 -> 11 (rank 2), row 1 -> 12 (rank 1), row 2 -> 10 (rank 3), row 3 -> 10
  // (rank 3: the model prefers token 5, which is no ID, then 12, 11, 10).
  auto inputs = at::tensor(std::vector<int64_t>{0, token::bos, token::pad, 1, token::bos,
                                                token::pad, 2, token::bos, token::pad, 3,
                                                token::bos, token::pad},
                           at::kLong)
                    .view({4, 3});
  auto targets =
      at::tensor(std::vector<int64_t>{11, 3, 12, 3, 10, 3, 10, 3}, at::kLong).view({4, 2});
  for (int64_t r = 0; r < 4; ++r) inputs[r][2] = targets[r][0];
  auto cfg = sculpt::config::Config::parse(
      "model: {name: mlp}\ndata: {name: synthetic_blobs}\n"
      "task: {name: generative_retrieval, beam_size: 3, hits_at: [1, 2], mrr_at: 3}\n");
  auto task = sculpt::tasks::task_registry().create(cfg.task.name, cfg.task, spec);
  sculpt::tasks::MetricSums sums;
  task->evaluate_batch(sums, fwd, inputs, targets);
  auto m = task->finish(sums);
  CHECK(m.at("hits@1") == Approx(1.0 / 4));
  CHECK(m.at("hits@2") == Approx(2.0 / 4));
  CHECK(m.at("mrr@3") == Approx((0.5 + 1.0 + 1.0 / 3 + 1.0 / 3) / 4));
  // Constrained decoding needs a dataset with IDs.
  data::DataSpec plain = spec;
  plain.valid_targets = nullptr;
  CHECK_THROWS_WITH(sculpt::tasks::task_registry().create(cfg.task.name, cfg.task, plain),
                    Catch::Contains("gr_synthetic"));
}

TEST_CASE("gr_jsonl reads documents and queries; bad files name the file and line",
          "[gr][data]") {
  auto dir = sculpt::test::temp_dir("gr_jsonl");
  sculpt::test::write_text(dir + "/docs.jsonl",
                           "{\"doc_id\": \"a\", \"text\": \"red apples grow on trees\"}\n"
                           "{\"doc_id\": \"b\", \"text\": \"blue whales swim in oceans\"}\n"
                           "{\"doc_id\": 7, \"text\": \"green frogs jump in ponds\"}\n");
  sculpt::test::write_text(dir + "/q.jsonl",
                           "{\"query\": \"apples trees\", \"doc_id\": \"a\"}\n"
                           "\n"
                           "{\"query\": \"whales\", \"doc_id\": \"b\"}\n"
                           "{\"query\": \"frogs\", \"doc_id\": 7}\n");
  const std::string base = "{name: gr_jsonl, docs_file: " + dir + "/docs.jsonl, queries_file: " +
                           dir + "/q.jsonl, max_query_len: 4, ids: atomic";
  auto d = load_dataset(base + ", index_docs: false}", DataPart::train);
  REQUIRE(d->size() == 3);
  CHECK(d->spec().valid_targets->size() == 3);
  // Atomic IDs in document order; hashing is deterministic, so equal words get equal ids.
  const int64_t id0 = token::first_word + 8192;
  CHECK(d->targets()[0][0].item<int64_t>() == id0);
  CHECK(d->targets()[2][0].item<int64_t>() == id0 + 2);
  auto v = load_dataset(base + ", tokenizer: vocab}", DataPart::train);
  // Documents in chunks of 4 words (2 each) + 3 queries; vocab: 14 words + unknown.
  CHECK(v->size() == 6 + 3);
  CHECK(v->spec().vocab_size == token::first_word + 15 + 3);
  auto first = v->inputs()[0];  // "red apples grow on": the first 4 vocabulary words
  CHECK(torch::equal(first.narrow(0, 0, 4),
                     torch::tensor({4, 5, 6, 7}, torch::kLong)));

  sculpt::test::write_text(dir + "/bad.jsonl", "{\"query\": \"x\", \"doc_id\": \"a\"}\n{oops\n");
  CHECK_THAT(error_of("{name: gr_jsonl, docs_file: " + dir + "/docs.jsonl, queries_file: " + dir +
                      "/bad.jsonl}"),
             Catch::Contains("bad.jsonl:2") && Catch::Contains("not valid JSON"));
  sculpt::test::write_text(dir + "/unknown.jsonl", "{\"query\": \"x\", \"doc_id\": \"zz\"}\n");
  CHECK_THAT(error_of("{name: gr_jsonl, docs_file: " + dir + "/docs.jsonl, queries_file: " + dir +
                      "/unknown.jsonl}"),
             Catch::Contains("unknown.jsonl:1") && Catch::Contains("\"zz\""));
  sculpt::test::write_text(dir + "/dup.jsonl",
                           "{\"doc_id\": \"a\", \"text\": \"x y\"}\n{\"doc_id\": \"a\", \"text\": \"z\"}\n");
  CHECK_THAT(error_of("{name: gr_jsonl, docs_file: " + dir + "/dup.jsonl, queries_file: " + dir +
                      "/q.jsonl}"),
             Catch::Contains("dup.jsonl:2") && Catch::Contains("twice"));
  sculpt::test::write_text(dir + "/nokey.jsonl", "{\"doc_id\": \"a\"}\n");
  CHECK_THAT(error_of("{name: gr_jsonl, docs_file: " + dir + "/nokey.jsonl, queries_file: " + dir +
                      "/q.jsonl}"),
             Catch::Contains("nokey.jsonl:1") && Catch::Contains("\"text\""));
  CHECK_THAT(error_of("{name: gr_jsonl, docs_file: " + dir + "/missing.jsonl, queries_file: " +
                      dir + "/q.jsonl}"),
             Catch::Contains("missing.jsonl"));
}
