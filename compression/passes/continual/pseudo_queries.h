// Pseudo queries for replay (replay's `source: pseudo_queries | both`): random spans of a
// retrieval corpus's documents (data::RetrievalDocs, in DataSpec::documents), each paired with
// its document's ID, as the rows replay keeps (the input row followed by the target row). They
// stand in for the stored training rows of documents learned earlier, in the spirit of DSI++'s
// generated-query rehearsal: the buffer holds a fixed number of queries per document whatever
// number of rows (index windows, queries) a document had.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <random>
#include <vector>

namespace sculpt::data {
struct RetrievalDocs;
}

namespace sculpt::compression {

struct PseudoQueryOptions {
  int64_t per_doc = 4;   // queries per document, >= 1
  int64_t span_min = 0;  // shortest span in tokens; 0: span_max
  int64_t span_max = 0;  // longest span in tokens; 0: the documents' source length
};

struct PseudoQueries {
  at::Tensor rows;           // int64 [docs * per_doc, source_len + 2 T]: input row, target row
  std::vector<int64_t> doc;  // per row: the document (index into RetrievalDocs)
  std::vector<int64_t> start, length;  // per row: the span in the document's tokens
};

// per_doc spans of every document, in document order; spans are at most the source length and
// the document's length long. The starts and lengths are drawn from `rng`.
PseudoQueries make_pseudo_queries(const data::RetrievalDocs& docs, const PseudoQueryOptions& o,
                                  std::mt19937_64& rng);

}  // namespace sculpt::compression
