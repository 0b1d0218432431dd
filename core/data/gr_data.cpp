// gr_synthetic and gr_jsonl (gr.h): their options, the generated corpus, the registrations.
// IDs and rows: gr_rows.cpp; gr_jsonl's files: gr_jsonl.cpp.
#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>
#include <cmath>

#include "core/config/visitors.h"
#include "core/data/dataset.h"
#include "core/data/file_input.h"
#include "core/data/gr.h"
#include "core/data/gr_rows.h"
#include "core/error.h"

namespace sculpt::data {

void GrCommonOptions::visit_common(config::Visitor& v) {
  v.choice("ids", ids, {"semantic", "atomic"},
           "gr_*: document IDs: semantic (digit paths of recursive k-means) or atomic (one token "
           "per document)");
  v.field("id_branch", id_branch, "gr_*: semantic IDs: digit slots per tree node",
          config::Range::at_least(2));
  v.field("id_reserve", id_reserve,
          "gr_*: semantic IDs: fraction of every node's slots kept free for later documents",
          config::Range::half_open(0, 1));
  v.field("id_max_depth", id_max_depth, "gr_*: semantic IDs: longest digit path",
          config::Range::at_least(1));
  v.field("id_dims", id_dims,
          "gr_*: semantic IDs: TF-IDF vectors randomly projected to this width for k-means; 0: "
          "unprojected",
          config::Range::at_least(0));
  v.field("documents", documents,
          "gr_*: whose rows a part holds: old (the original documents), new (every later one), "
          "all, or update<k> (the documents of the k-th update, 1-based: gr_synthetic's "
          "updates, gr_jsonl's \"update\" field)");
  v.field("index_docs", index_docs,
          "gr_*: the train part also maps each document's text (in query-sized chunks) to its ID");
  v.field("index_stride", index_stride,
          "gr_*: index_docs: tokens between the starts of a document's chunks (overlapping "
          "windows when below the chunk length); 0: the chunk length (no overlap)",
          config::Range::at_least(0));
  v.field("eval_docs", eval_docs,
          "gr_*: validation and test queries only of the first N old documents (and the first N "
          "of each update), so beam-search evaluation stays cheap; 0: of every document",
          config::Range::at_least(0));
  v.field("seed", seed, "gr_*: seed of the generator and of k-means", config::Range::at_least(0));
  v.field("removed_docs", removed_docs,
          "gr_*: documents taken out (gr_synthetic: document indices, gr_jsonl: doc_id): no rows, "
          "and out of the ID trie, so constrained decoding never emits their IDs");
}

std::optional<DocSelection> parse_doc_selection(const std::string& documents) {
  DocSelection s;
  if (documents == "all") return s;
  if (documents == "new") {
    s.kind = DocSelection::any_new;
    return s;
  }
  s.kind = DocSelection::one_update;
  if (documents == "old") return s;
  const std::string prefix = "update";
  if (documents.size() <= prefix.size() || documents.size() > prefix.size() + 9 ||
      documents.compare(0, prefix.size(), prefix) != 0 || documents[prefix.size()] == '0')
    return std::nullopt;
  for (size_t i = prefix.size(); i < documents.size(); ++i)
    if (!std::isdigit(static_cast<unsigned char>(documents[i]))) return std::nullopt;
  s.update = std::stoll(documents.substr(prefix.size()));
  return s;
}

void GrCommonOptions::check(config::Checker& c) const {
  if (!parse_doc_selection(documents))
    c.error("documents", "expected old, new, all or update<k> (k >= 1, e.g. update2), got '" +
                             documents + "'");
}

void GrSyntheticOptions::check(config::Checker& c) const {
  GrCommonOptions::check(c);
  const auto s = parse_doc_selection(documents);
  if (s && s->kind == DocSelection::one_update && s->update > 0 &&
      (s->update > updates || new_docs == 0))
    c.error("documents", documents + ": the corpus has " +
                             (new_docs == 0 ? std::string("no new documents (new_docs: 0)")
                                            : "updates 1.." + std::to_string(updates) +
                                                  " (updates: " + std::to_string(updates) + ")"));
}

void GrSyntheticOptions::visit(config::Visitor& v) {
  v.field("docs", docs, "gr_synthetic: documents of the original corpus",
          config::Range::at_least(2));
  v.field("new_docs", new_docs,
          "gr_synthetic: documents that arrive later, per update (documents: new, update<k>)",
          config::Range::at_least(0));
  v.field("updates", updates,
          "gr_synthetic: updates that bring new_docs documents each (documents: update1.."
          "update<updates>); update k's get IDs after every earlier document's",
          config::Range::at_least(1));
  v.field("topics", topics, "gr_synthetic: latent topics", config::Range::at_least(1));
  v.field("vocab", vocab, "gr_synthetic: words", config::Range::at_least(2));
  v.field("zipf", zipf, "gr_synthetic: Zipf exponent of each topic's word distribution",
          config::Range::above(0));
  v.field("doc_len", doc_len, "gr_synthetic: tokens per document", config::Range::at_least(1));
  v.field("queries_per_doc", queries_per_doc,
          "gr_synthetic: queries per document; query 0 is a test query, query 1 a validation "
          "query, the rest train",
          config::Range::at_least(3));
  v.field("test_queries", test_queries,
          "gr_synthetic: test queries per document: query 0 and test_queries - 1 more from a "
          "random stream of their own (the documents and other queries stay the same)",
          config::Range::at_least(1));
  v.field("query_len", query_len, "gr_synthetic: query span length before noise",
          config::Range::at_least(1));
  v.field("drop", drop, "gr_synthetic: probability that a query token is dropped",
          config::Range::half_open(0, 1));
  v.field("substitute", substitute,
          "gr_synthetic: probability that a query token is replaced by a word of the topic",
          config::Range::closed(0, 1));
  v.field("swap", swap, "gr_synthetic: probability that a query token swaps with the next",
          config::Range::closed(0, 1));
  visit_common(v);
}

void GrJsonlOptions::visit(config::Visitor& v) {
  v.file("docs_file", docs_file, "gr_jsonl: JSON lines {\"doc_id\", \"text\"}",
         config::Need::required);
  v.file("new_docs_file", new_docs_file,
         "gr_jsonl: documents that arrive later, JSON lines {\"doc_id\", \"text\"} and "
         "optionally \"update\": k >= 1 (default 1), the update that brings it (documents: "
         "update<k>)");
  v.file("queries_file", queries_file, "gr_jsonl: training queries, JSON lines {\"query\", \"doc_id\"}",
         config::Need::required);
  v.file("test_queries_file", test_queries_file, "gr_jsonl: held-out queries (the test part)");
  v.choice("tokenizer", tokenizer, {"hash", "vocab"},
           "gr_jsonl: words (whitespace-split, lowercased) hashed into buckets, or a vocabulary "
           "of the documents' words");
  v.field("buckets", buckets, "gr_jsonl: hash buckets of the hash tokenizer",
          config::Range::at_least(1));
  v.field("max_query_len", max_query_len,
          "gr_jsonl: tokens kept per query (and per document chunk)", config::Range::at_least(1));
  visit_common(v);
}

namespace {

// Deterministic across platforms (no std:: distributions): splitmix64.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }
};

uint64_t mix(uint64_t a, uint64_t b) { return Rng(a * 0x2545f4914f6cdd1dull + b).next(); }

}  // namespace

GrCorpus generate_gr_corpus(const GrSyntheticOptions& o) {
  const auto seed = static_cast<uint64_t>(o.seed);
  // Each topic: a permutation of the words (rank -> word); one Zipf CDF over ranks.
  std::vector<std::vector<int64_t>> perm(static_cast<size_t>(o.topics));
  for (int64_t t = 0; t < o.topics; ++t) {
    Rng r(mix(seed, 1000 + static_cast<uint64_t>(t)));
    auto& p = perm[size_t(t)];
    p.resize(size_t(o.vocab));
    for (int64_t i = 0; i < o.vocab; ++i) p[size_t(i)] = i;
    for (int64_t i = o.vocab - 1; i > 0; --i) std::swap(p[size_t(i)], p[size_t(r.below(i + 1))]);
  }
  std::vector<double> cdf(static_cast<size_t>(o.vocab));
  double total = 0;
  for (int64_t i = 0; i < o.vocab; ++i) cdf[size_t(i)] = total += std::pow(i + 1.0, -o.zipf);
  auto word = [&](Rng& r, int64_t topic) {
    const double u = r.uniform() * total;
    auto rank = std::min<int64_t>(o.vocab - 1, std::upper_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
    return perm[size_t(topic)][size_t(rank)];
  };
  GrCorpus c;
  const int64_t n = o.docs + o.new_docs * o.updates;
  c.old_docs = o.docs;
  c.docs.resize(size_t(n));
  c.topic.resize(size_t(n));
  for (int64_t d = 0; d < n; ++d)
    c.update.push_back(d < o.docs ? 0 : 1 + (d - o.docs) / o.new_docs);
  for (int64_t d = 0; d < n; ++d) {
    Rng r(mix(seed, 0x100000000ull + static_cast<uint64_t>(d)));
    const int64_t topic = r.below(o.topics);
    c.topic[size_t(d)] = topic;
    auto& doc = c.docs[size_t(d)];
    for (int64_t i = 0; i < o.doc_len; ++i) doc.push_back(word(r, topic));
    const int64_t span = std::min(o.query_len, o.doc_len);
    auto add_query = [&](Rng& qr, int split) {
      GrQuery query;
      query.doc = d;
      query.split = split;
      const int64_t start = qr.below(o.doc_len - span + 1);
      for (int64_t i = 0; i < span; ++i) {
        if (qr.uniform() < o.drop) continue;
        query.tokens.push_back(qr.uniform() < o.substitute ? word(qr, topic)
                                                           : doc[size_t(start + i)]);
      }
      if (query.tokens.empty()) query.tokens.push_back(doc[size_t(start)]);
      for (size_t i = 0; i + 1 < query.tokens.size(); ++i)
        if (qr.uniform() < o.swap) std::swap(query.tokens[i], query.tokens[i + 1]);
      c.queries.push_back(std::move(query));
    };
    for (int64_t q = 0; q < o.queries_per_doc; ++q) add_query(r, q == 0 ? 2 : q == 1 ? 1 : 0);
    Rng extra(mix(seed, 0x200000000ull + static_cast<uint64_t>(d)));
    for (int64_t q = 1; q < o.test_queries; ++q) add_query(extra, 2);
  }
  return c;
}

namespace {

std::unique_ptr<Dataset> load_synthetic(const GrSyntheticOptions& o, DataPart part) {
  auto b = gr_rows::cached("gr_synthetic\n" + gr_rows::key_of(o), [&] {
    auto out = std::make_shared<gr_rows::Built>();
    out->corpus = generate_gr_corpus(o);
    out->words = o.vocab;
    out->source_len = std::min(o.query_len, o.doc_len);
    gr_rows::assign_ids(o, *out);
    return out;
  });
  return gr_rows::make_rows(o, *b, part);
}

}  // namespace

void add_gr_datasets(DatasetRegistry& r) {
  r.add(
      "gr_synthetic",
      "generative retrieval: generated documents over latent topics, noisy-span queries, "
      "semantic or atomic document IDs; test part: the test queries",
      [](const config::DataConfig& c, DataPart part) {
        return load_synthetic(options_of<GrSyntheticOptions>(c), part);
      },
      [] { return std::make_shared<GrSyntheticOptions>(); });
  r.add(
      "gr_jsonl",
      "generative retrieval: JSON-lines documents and (query, doc_id) pairs, semantic or atomic "
      "document IDs; test part: test_queries_file",
      [](const config::DataConfig& c, DataPart part) {
        return gr_rows::load_gr_jsonl(options_of<GrJsonlOptions>(c), part);
      },
      [] { return std::make_shared<GrJsonlOptions>(); });
}

}  // namespace sculpt::data
