// Internal to gr_synthetic and gr_jsonl (gr.h): a corpus with its document IDs, built once per
// distinct options, and the seq2seq rows of one part of it. Not installed.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/config/visitors.h"
#include "core/data/dataset.h"
#include "core/data/gr.h"

namespace sculpt::data::gr_rows {

// A corpus with its IDs (train and test parts share it).
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
  std::vector<int64_t> update_begin;  // per update (0: the old documents): its first document
};

// IDs of every document (old ones by recursive k-means, later ones added in order), the trie,
// removed_docs resolved. corpus.update must be set and ascending.
void assign_ids(const GrCommonOptions& o, Built& b);

// Rows of a part: the train part holds the document chunks (index_docs) and the train and
// validation queries (validation rows marked), the test part the test queries; only of the
// documents `o.documents` selects.
std::unique_ptr<Dataset> make_rows(const GrCommonOptions& o, const Built& b, DataPart part);

// The built corpus of `key`, made by `make` the first time.
std::shared_ptr<const Built> cached(const std::string& key,
                                    const std::function<std::shared_ptr<Built>()>& make);

// gr_jsonl's part (gr_jsonl.cpp); null for the test part without test_queries_file.
std::unique_ptr<Dataset> load_gr_jsonl(const GrJsonlOptions& o, DataPart part);

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

}  // namespace sculpt::data::gr_rows
