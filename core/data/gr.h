// Generative-retrieval corpora: documents, queries and document IDs (docids.h), as seq2seq rows
// (DataSpec: source = the query, padded; decoder over the document's ID tokens + eos).
//  gr_synthetic: N documents over K latent topics, each a token sequence drawn from its topic's
//                Zipf distribution over the vocabulary (every topic ranks the words by its own
//                permutation); M queries per document, each a span of the document with tokens
//                dropped, substituted (by words of the topic) and swapped with a neighbour.
//                Query 0 of each document is in the test split, query 1 in the validation
//                split, the others in the training split; `test_queries` - 1 more test
//                queries per document come from a random stream of their own, so the
//                documents and the other queries do not change with it.
//  gr_jsonl:     documents {"doc_id", "text"} and (query, doc_id) pairs {"query", "doc_id"} as
//                JSON lines; words by whitespace, hashed into buckets or looked up in a
//                vocabulary built from the documents.
// Both can hold documents that arrive later ("new" documents), in one or several updates
// (gr_synthetic: `updates` of `new_docs` each; gr_jsonl: a line's "update" field): they get IDs
// from IdTree::add in the order they arrive, next to their nearest old or earlier documents,
// and `documents` picks whose rows a part holds (old | new | all | update<k>). The ID trie in
// the DataSpec always holds every document's ID; DataSpec::documents holds the selected
// documents' texts and ID rows (RetrievalDocs), for passes that make rows of their own.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/config/config.h"
#include "core/data/docids.h"

namespace sculpt::data {

// Keys shared by the two corpora: IDs and which rows a part holds.
struct GrCommonOptions : config::Section {
  std::string ids = "semantic";  // semantic (k-means digit paths) | atomic (one token per doc)
  int64_t id_branch = 10;        // semantic: digit slots per tree node
  double id_reserve = 0.2;       // semantic: fraction of each node's slots kept for new docs
  int64_t id_max_depth = 6;      // semantic: longest digit path
  int64_t id_dims = 128;         // semantic: TF-IDF randomly projected to this width; 0: none
  std::string documents = "all";  // rows of old | new | all | update<k> (1-based) documents
  bool index_docs = true;        // the train part also maps each document's text to its ID
  int64_t index_stride = 0;      // tokens between index chunks' starts; 0: the chunk length
  int64_t eval_docs = 0;         // val/test rows only for the first N selected docs; 0: all
  int64_t seed = 0;              // generator / k-means seed
  // Documents taken out (gr_synthetic: indices, gr_jsonl: doc_id): no rows, out of the ID trie
  // (so constrained decoding never emits them), retired in the IdTree; other IDs unchanged.
  std::vector<std::string> removed_docs;
  void visit_common(config::Visitor& v);
  void check(config::Checker& c) const override;
};

// `documents` as a selection: the update whose documents a part holds (0: the old ones), or
// every new one, or all; nullopt when it is none of old | new | all | update<k>, k >= 1.
struct DocSelection {
  enum Kind { all, any_new, one_update } kind = all;
  int64_t update = 0;  // kind one_update: 0 old, k >= 1 the k-th update
  bool holds(int64_t doc_update) const {
    return kind == all || (kind == any_new ? doc_update > 0 : doc_update == update);
  }
};
std::optional<DocSelection> parse_doc_selection(const std::string& documents);

struct GrSyntheticOptions : GrCommonOptions {
  int64_t docs = 20000;         // documents of the original corpus
  int64_t new_docs = 0;         // documents that arrive later, per update
  int64_t updates = 1;          // updates that bring new_docs documents each
  int64_t topics = 50;          // latent topics
  int64_t vocab = 5000;         // words
  double zipf = 1.1;            // Zipf exponent of every topic's word distribution
  int64_t doc_len = 32;         // tokens per document
  int64_t queries_per_doc = 4;  // queries per document (>= 3: test, val, train)
  int64_t test_queries = 1;     // test queries per document (the first is query 0)
  int64_t query_len = 8;        // span length before noise
  double drop = 0.1;            // per-token probability of dropping it from the query
  double substitute = 0.1;      // ... of replacing it by a word of the topic
  double swap = 0.1;            // ... of swapping it with its right neighbour
  void visit(config::Visitor& v) override;
  void check(config::Checker& c) const override;
};

struct GrJsonlOptions : GrCommonOptions {
  std::string docs_file;          // JSON lines {"doc_id", "text"}
  std::string new_docs_file;      // documents that arrive later ({"update": k} >= 1, default 1)
  std::string queries_file;       // JSON lines {"query", "doc_id"}: the training queries
  std::string test_queries_file;  // held-out queries (test part); "": none
  std::string tokenizer = "hash";  // hash (words into `buckets`) | vocab (from the documents)
  int64_t buckets = 8192;          // hash: word buckets
  int64_t max_query_len = 16;      // query / document tokens kept
  void visit(config::Visitor& v) override;
};

// A generated corpus (deterministic by its options; document i is the same whatever `docs`,
// `new_docs` and `updates` are).
struct GrQuery {
  int64_t doc = 0;
  TokenSeq tokens;   // word ids in [0, vocab)
  int split = 0;     // 0 train, 1 val, 2 test
};
struct GrCorpus {
  std::vector<TokenSeq> docs;  // word ids in [0, vocab): the old documents, then the new
  std::vector<int64_t> topic;  // per document
  std::vector<int64_t> update;  // per document: 0 old, k >= 1 arrived with update k
  int64_t old_docs = 0;
  std::vector<GrQuery> queries;
};
GrCorpus generate_gr_corpus(const GrSyntheticOptions& o);

// The documents behind a retrieval part's rows (DataSpec::documents): a query of document i is
// the row cat(the query's tokens padded to source_len, decoder_inputs[i]) with the target
// targets[i], as the corpus's own rows are (dataset.h, seq2seq).
struct RetrievalDocs {
  std::vector<TokenSeq> texts;     // per document: its tokens as model input ids
  at::Tensor decoder_inputs;       // int64 [docs, T]: bos, then the ID tokens, padded
  at::Tensor targets;              // int64 [docs, T]: the ID tokens + eos, padded
  std::vector<int64_t> corpus_doc;  // per document: its index in the corpus
  int64_t source_len = 0;
  int64_t size() const { return static_cast<int64_t>(texts.size()); }
  // The input row [source_len + T] of `query` (model ids; the first source_len kept) for
  // document i.
  at::Tensor input_row(const TokenSeq& query, int64_t i) const;
};

}  // namespace sculpt::data
