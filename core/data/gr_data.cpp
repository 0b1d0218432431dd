// gr_synthetic and gr_jsonl (gr.h): corpora, IDs and seq2seq rows.
#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <mutex>
#include <nlohmann/json.hpp>
#include <functional>
#include <map>
#include <unordered_map>

#include "core/config/visitors.h"
#include "core/data/dataset.h"
#include "core/data/file_input.h"
#include "core/data/gr.h"
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
  v.choice("documents", documents, {"old", "new", "all"},
           "gr_*: whose queries the rows hold: the original documents, the later ones, or all");
  v.field("index_docs", index_docs,
          "gr_*: the train part also maps each document's text (in query-sized chunks) to its ID");
  v.field("index_stride", index_stride,
          "gr_*: index_docs: tokens between the starts of a document's chunks (overlapping "
          "windows when below the chunk length); 0: the chunk length (no overlap)",
          config::Range::at_least(0));
  v.field("eval_docs", eval_docs,
          "gr_*: validation and test queries only of the first N old (and N new) documents, so "
          "beam-search evaluation stays cheap; 0: of every document",
          config::Range::at_least(0));
  v.field("seed", seed, "gr_*: seed of the generator and of k-means", config::Range::at_least(0));
  v.field("removed_docs", removed_docs,
          "gr_*: documents taken out (gr_synthetic: document indices, gr_jsonl: doc_id): no rows, "
          "and out of the ID trie, so constrained decoding never emits their IDs");
}

void GrSyntheticOptions::visit(config::Visitor& v) {
  v.field("docs", docs, "gr_synthetic: documents of the original corpus",
          config::Range::at_least(2));
  v.field("new_docs", new_docs, "gr_synthetic: documents that arrive later (documents: new)",
          config::Range::at_least(0));
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
         "gr_jsonl: documents that arrive later, JSON lines {\"doc_id\", \"text\"}");
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
  const int64_t n = o.docs + o.new_docs;
  c.old_docs = o.docs;
  c.docs.resize(size_t(n));
  c.topic.resize(size_t(n));
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

// A corpus with its IDs, built once per distinct options (train and test parts share it).
struct Built {
  GrCorpus corpus;
  std::vector<TokenSeq> ids;  // per document: ID tokens + eos
  std::shared_ptr<IdTrie> trie;
  int64_t words = 0;       // word ids [first_word, first_word + words)
  int64_t vocab_size = 0;  // words, then the ID tokens
  int64_t source_len = 0;
  int64_t target_len = 0;  // longest ID + eos
  int64_t leaf_splits = 0;
  std::vector<std::string> names;  // gr_jsonl: doc_id per document (gr_synthetic: the index)
  std::vector<bool> removed;       // per document: in removed_docs
};

// removed_docs as document indices; an unknown one is a UserError naming it.
void resolve_removed(const GrCommonOptions& o, Built& b) {
  const int64_t n = static_cast<int64_t>(b.corpus.docs.size());
  b.removed.assign(size_t(n), false);
  if (o.removed_docs.empty()) return;
  std::unordered_map<std::string, int64_t> index;
  for (int64_t d = 0; d < n; ++d)
    index.emplace(d < static_cast<int64_t>(b.names.size()) ? b.names[size_t(d)] : std::to_string(d), d);
  for (const auto& id : o.removed_docs) {
    auto it = index.find(id);
    SCULPT_CHECK(it != index.end(), "removed_docs: no document '", id, "' in the corpus (",
                 n, " documents", b.names.empty() ? ", ids 0.." + std::to_string(n - 1) : "", ")");
    b.removed[size_t(it->second)] = true;
  }
}

void assign_ids(const GrCommonOptions& o, Built& b) {
  const int64_t n = static_cast<int64_t>(b.corpus.docs.size());
  resolve_removed(o, b);
  const int64_t base = token::first_word + b.words;
  b.ids.resize(size_t(n));
  if (o.ids == "atomic") {
    for (int64_t d = 0; d < n; ++d) b.ids[size_t(d)] = {base + d, token::eos};
    b.vocab_size = base + n;
  } else {
    std::vector<TokenSeq> docs = b.corpus.docs;
    auto vectors = tfidf_vectors(docs, b.corpus.old_docs, b.words, o.id_dims,
                                 static_cast<uint64_t>(o.seed) + 17);
    SemanticIdOptions so;
    so.branch = o.id_branch;
    so.reserve = o.id_reserve;
    so.max_depth = o.id_max_depth;
    so.seed = o.seed;
    IdTree tree(vectors.narrow(0, 0, b.corpus.old_docs), so);
    for (int64_t d = b.corpus.old_docs; d < n; ++d) tree.add(vectors[d]);
    for (int64_t d = 0; d < n; ++d)
      if (b.removed[size_t(d)]) tree.remove(d);
    for (int64_t d = 0; d < n; ++d)
      b.ids[size_t(d)] = semantic_tokens(tree.paths()[size_t(d)], base, o.id_branch);
    b.vocab_size = base + o.id_max_depth * o.id_branch;
    b.leaf_splits = tree.leaf_splits();
  }
  b.trie = std::make_shared<IdTrie>();
  for (size_t d = 0; d < b.ids.size(); ++d) {
    const auto& id = b.ids[d];
    if (!b.removed[d]) b.trie->insert(id);
    b.target_len = std::max(b.target_len, static_cast<int64_t>(id.size()));
  }
}

bool selected(const GrCommonOptions& o, const Built& b, int64_t doc) {
  if (!b.removed.empty() && b.removed[size_t(doc)]) return false;
  const auto& c = b.corpus;
  const bool is_new = doc >= c.old_docs;
  return o.documents == "all" || (o.documents == "new") == is_new;
}

// Rows of a part: the train part holds the document chunks (index_docs) and the train and
// validation queries (validation rows marked), the test part the test queries.
std::unique_ptr<Dataset> make_rows(const GrCommonOptions& o, const Built& b, DataPart part) {
  const int64_t s = b.source_len, t = b.target_len;
  std::vector<const TokenSeq*> sources;
  std::vector<int64_t> docs, val;
  std::vector<TokenSeq> chunks;
  std::vector<int64_t> chunk_docs;
  const auto& c = b.corpus;
  if (part == DataPart::train && o.index_docs) {
    for (int64_t d = 0; d < static_cast<int64_t>(c.docs.size()); ++d) {
      if (!selected(o, b, d)) continue;
      const auto& doc = c.docs[size_t(d)];
      const auto stride = static_cast<size_t>(o.index_stride > 0 ? o.index_stride : s);
      // Windows of s tokens every `stride`; the last one ends at the document's end.
      for (size_t i = 0; i < doc.size(); i += stride) {
        const size_t start = std::min(i, doc.size() - std::min(doc.size(), size_t(s)));
        const size_t end = std::min(doc.size(), start + size_t(s));
        chunks.emplace_back(doc.begin() + long(start), doc.begin() + long(end));
        chunk_docs.push_back(d);
        if (end == doc.size()) break;
      }
    }
  }
  for (size_t k = 0; k < chunks.size(); ++k) {
    sources.push_back(&chunks[k]);
    docs.push_back(chunk_docs[k]);
  }
  for (const auto& q : c.queries) {
    if (!selected(o, b, q.doc)) continue;
    if ((part == DataPart::test) != (q.split == 2)) continue;
    const int64_t rank = q.doc >= c.old_docs ? q.doc - c.old_docs : q.doc;
    if (q.split != 0 && o.eval_docs > 0 && rank >= o.eval_docs) continue;
    if (q.split == 1) val.push_back(static_cast<int64_t>(docs.size()));
    sources.push_back(&q.tokens);
    docs.push_back(q.doc);
  }
  const auto n = static_cast<int64_t>(docs.size());
  auto x = at::full({n, s + t}, token::pad, at::kLong);
  auto y = at::full({n, t}, token::pad, at::kLong);
  int64_t* px = x.data_ptr<int64_t>();
  int64_t* py = y.data_ptr<int64_t>();
  for (int64_t r = 0; r < n; ++r) {
    const auto& src = *sources[size_t(r)];
    int64_t* in = px + r * (s + t);
    for (int64_t i = 0; i < std::min<int64_t>(s, static_cast<int64_t>(src.size())); ++i)
      in[i] = token::first_word + src[size_t(i)];
    const auto& id = b.ids[size_t(docs[size_t(r)])];
    in[s] = token::bos;
    for (size_t i = 0; i < id.size(); ++i) {
      py[r * t + long(i)] = id[i];
      if (i + 1 < id.size()) in[s + 1 + long(i)] = id[i];
    }
  }
  DataSpec spec;
  spec.input_shape = {s + t};
  spec.vocab_size = b.vocab_size;
  spec.source_len = s;
  spec.valid_targets = b.trie;
  auto ds = std::make_unique<Dataset>(x, y, spec);
  if (!val.empty()) ds->set_val_rows(at::tensor(val, at::kLong));
  return ds;
}

// What the built corpus depends on: every key but the row selection.
template <class T>
std::string key_of(const T& o) {
  T m = o;
  m.documents = "all";
  m.index_docs = true;
  m.index_stride = 0;
  m.eval_docs = 0;
  return config::dump_yaml(m);
}

// The built corpus of `key`, made by `make` the first time (train and test parts share it).
std::shared_ptr<const Built> cached(const std::string& key,
                                    const std::function<std::shared_ptr<Built>()>& make) {
  static std::mutex m;
  static std::map<std::string, std::shared_ptr<const Built>> cache;
  std::lock_guard<std::mutex> lock(m);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  if (cache.size() > 4) cache.clear();
  auto b = make();
  cache[key] = b;
  return b;
}

std::unique_ptr<Dataset> load_synthetic(const GrSyntheticOptions& o, DataPart part) {
  auto b = cached("gr_synthetic\n" + key_of(o), [&] {
    auto out = std::make_shared<Built>();
    out->corpus = generate_gr_corpus(o);
    out->words = o.vocab;
    out->source_len = std::min(o.query_len, o.doc_len);
    assign_ids(o, *out);
    return out;
  });
  return make_rows(o, *b, part);
}

// ---- gr_jsonl ----

std::vector<std::string> whitespace_words(std::string_view text) {
  std::vector<std::string> out;
  std::string w;
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x80 && std::isspace(c)) {
      if (!w.empty()) out.push_back(w);
      w.clear();
    } else {
      w += c < 0x80 ? static_cast<char>(std::tolower(c)) : ch;
    }
  }
  if (!w.empty()) out.push_back(w);
  return out;
}

nlohmann::json parse_line(const std::string& path, int64_t line_no, std::string_view line) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line.begin(), line.end());
  } catch (const nlohmann::json::exception& e) {  // parse_error, out_of_range (1e999)
    throw UserError(path + ":" + std::to_string(line_no) + ": not valid JSON: " + e.what());
  }
  SCULPT_CHECK(j.is_object(), path, ":", line_no, ": expected a JSON object, got ", j.type_name());
  return j;
}

std::string string_field(const std::string& path, int64_t line_no, const nlohmann::json& j,
                         const char* key) {
  SCULPT_CHECK(j.contains(key), path, ":", line_no, ": missing key \"", key, "\"");
  const auto& v = j.at(key);
  if (v.is_string()) return v.get<std::string>();
  SCULPT_CHECK(v.is_number_integer() && std::string(key) == "doc_id", path, ":", line_no,
               ": \"", key, "\" must be a string", std::string(key) == "doc_id" ? " or an integer" : "");
  return std::to_string(v.get<int64_t>());
}

struct JsonlTokenizer {
  const GrJsonlOptions& o;
  std::unordered_map<std::string, int64_t> vocab;  // vocab tokenizer
  int64_t words() const { return o.tokenizer == "hash" ? o.buckets : int64_t(vocab.size()) + 1; }
  // Word ids in [0, words()); the vocab tokenizer maps unknown words to the last id.
  TokenSeq encode(const std::vector<std::string>& ws) const {
    TokenSeq out;
    for (const auto& w : ws) {
      if (o.tokenizer == "hash") {
        uint64_t h = 1469598103934665603ull;  // FNV-1a
        for (char ch : w) h = (h ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
        out.push_back(static_cast<int64_t>(h % static_cast<uint64_t>(o.buckets)));
      } else {
        auto it = vocab.find(w);
        out.push_back(it == vocab.end() ? static_cast<int64_t>(vocab.size()) : it->second);
      }
    }
    return out;
  }
};

std::unique_ptr<Dataset> load_jsonl(const GrJsonlOptions& o, DataPart part) {
  if (part == DataPart::test && o.test_queries_file.empty()) return nullptr;
  auto b = cached("gr_jsonl\n" + key_of(o), [&] {
    auto out = std::make_shared<Built>();
    std::unordered_map<std::string, int64_t> doc_index;
    std::vector<std::vector<std::string>> texts;
    auto read_docs = [&](const std::string& path) {
      for_each_line(read_maybe_gz(path), [&](std::string_view line, int64_t no) {
        auto j = parse_line(path, no, line);
        const auto id = string_field(path, no, j, "doc_id");
        SCULPT_CHECK(doc_index.emplace(id, static_cast<int64_t>(texts.size())).second, path, ":",
                     no, ": doc_id \"", id, "\" appears twice");
        texts.push_back(whitespace_words(string_field(path, no, j, "text")));
        out->names.push_back(id);
      });
    };
    read_docs(o.docs_file);
    out->corpus.old_docs = static_cast<int64_t>(texts.size());
    SCULPT_CHECK(out->corpus.old_docs >= 2, o.docs_file, ": fewer than 2 documents");
    if (!o.new_docs_file.empty()) read_docs(o.new_docs_file);
    JsonlTokenizer tok{o, {}};
    if (o.tokenizer == "vocab")
      for (int64_t d = 0; d < out->corpus.old_docs; ++d)
        for (const auto& w : texts[size_t(d)])
          tok.vocab.emplace(w, static_cast<int64_t>(tok.vocab.size()));
    for (const auto& t : texts) out->corpus.docs.push_back(tok.encode(t));
    auto read_queries = [&](const std::string& path, int split) {
      for_each_line(read_maybe_gz(path), [&](std::string_view line, int64_t no) {
        auto j = parse_line(path, no, line);
        const auto id = string_field(path, no, j, "doc_id");
        auto it = doc_index.find(id);
        SCULPT_CHECK(it != doc_index.end(), path, ":", no, ": doc_id \"", id,
                     "\" is not a document of ", o.docs_file,
                     o.new_docs_file.empty() ? "" : " or " + o.new_docs_file);
        GrQuery q;
        q.doc = it->second;
        q.split = split;
        q.tokens = tok.encode(whitespace_words(string_field(path, no, j, "query")));
        if (q.tokens.empty()) q.tokens.push_back(0);
        out->corpus.queries.push_back(std::move(q));
      });
    };
    read_queries(o.queries_file, 0);
    if (!o.test_queries_file.empty()) read_queries(o.test_queries_file, 2);
    for (auto& d : out->corpus.docs)
      if (d.empty()) d.push_back(0);
    out->words = tok.words();
    out->source_len = o.max_query_len;
    assign_ids(o, *out);
    return out;
  });
  return make_rows(o, *b, part);
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
        return load_jsonl(options_of<GrJsonlOptions>(c), part);
      },
      [] { return std::make_shared<GrJsonlOptions>(); });
}

}  // namespace sculpt::data
