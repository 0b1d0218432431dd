// gr_synthetic and gr_jsonl (gr.h): document IDs of a built corpus and the seq2seq rows of a
// part (gr_rows.h).
#include "core/data/gr_rows.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <unordered_map>

#include "core/error.h"

namespace sculpt::data {

at::Tensor RetrievalDocs::input_row(const TokenSeq& query, int64_t i) const {
  SCULPT_ASSERT(i >= 0 && i < size(), "RetrievalDocs::input_row: no document ", i);
  const int64_t t = decoder_inputs.size(1);
  auto row = at::full({source_len + t}, token::pad, at::kLong);
  auto* p = row.data_ptr<int64_t>();
  for (int64_t k = 0; k < std::min<int64_t>(source_len, static_cast<int64_t>(query.size())); ++k)
    p[k] = query[size_t(k)];
  row.narrow(0, source_len, t).copy_(decoder_inputs[i]);
  return row;
}

namespace gr_rows {

namespace {

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

// The decoder input (bos, then the ID without its last token) and the target (the ID) of a
// document, each `t` wide, already padded.
void put_id(const TokenSeq& id, int64_t* decoder_in, int64_t* target) {
  decoder_in[0] = token::bos;
  for (size_t i = 0; i < id.size(); ++i) {
    target[i] = id[i];
    if (i + 1 < id.size()) decoder_in[1 + i] = id[i];
  }
}

// The selected documents' texts and ID rows (DataSpec::documents).
std::shared_ptr<const RetrievalDocs> documents_of(const std::vector<int64_t>& docs,
                                                  const Built& b) {
  auto out = std::make_shared<RetrievalDocs>();
  const auto n = static_cast<int64_t>(docs.size()), t = b.target_len;
  out->source_len = b.source_len;
  out->decoder_inputs = at::full({n, t}, token::pad, at::kLong);
  out->targets = at::full({n, t}, token::pad, at::kLong);
  for (int64_t k = 0; k < n; ++k) {
    const int64_t d = docs[size_t(k)];
    TokenSeq text;
    for (int64_t w : b.corpus.docs[size_t(d)]) text.push_back(token::first_word + w);
    out->texts.push_back(std::move(text));
    out->corpus_doc.push_back(d);
    put_id(b.ids[size_t(d)], out->decoder_inputs.data_ptr<int64_t>() + k * t,
           out->targets.data_ptr<int64_t>() + k * t);
  }
  return out;
}

}  // namespace

void assign_ids(const GrCommonOptions& o, Built& b) {
  const int64_t n = static_cast<int64_t>(b.corpus.docs.size());
  auto& update = b.corpus.update;
  if (update.empty())
    for (int64_t d = 0; d < n; ++d) update.push_back(d < b.corpus.old_docs ? 0 : 1);
  SCULPT_ASSERT(static_cast<int64_t>(update.size()) == n &&
                    std::is_sorted(update.begin(), update.end()),
                "gr: documents not in the order of their updates");
  b.update_begin.clear();
  for (int64_t d = 0; d < n; ++d)
    while (static_cast<int64_t>(b.update_begin.size()) <= update[size_t(d)])
      b.update_begin.push_back(d);
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
    // Later documents in the order they arrive: update k's next to old and earlier ones.
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

std::unique_ptr<Dataset> make_rows(const GrCommonOptions& o, const Built& b, DataPart part) {
  const auto selection = parse_doc_selection(o.documents);
  SCULPT_CHECK(selection, "documents: expected old, new, all or update<k>, got '", o.documents,
               "'");
  const int64_t updates = static_cast<int64_t>(b.update_begin.size()) - 1;
  SCULPT_CHECK(selection->kind != DocSelection::one_update || selection->update <= updates,
               "documents: ", o.documents, ", but the corpus has ", updates,
               updates == 1 ? " update" : " updates", " of new documents");
  const int64_t s = b.source_len, t = b.target_len;
  const auto& c = b.corpus;
  auto selected = [&](int64_t doc) {
    return !b.removed[size_t(doc)] && selection->holds(c.update[size_t(doc)]);
  };
  std::vector<const TokenSeq*> sources;
  std::vector<int64_t> docs, val, chosen;
  std::vector<TokenSeq> chunks;
  std::vector<int64_t> chunk_docs;
  for (int64_t d = 0; d < static_cast<int64_t>(c.docs.size()); ++d) {
    if (!selected(d)) continue;
    chosen.push_back(d);
    if (part != DataPart::train || !o.index_docs) continue;
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
  for (size_t k = 0; k < chunks.size(); ++k) {
    sources.push_back(&chunks[k]);
    docs.push_back(chunk_docs[k]);
  }
  for (const auto& q : c.queries) {
    if (!selected(q.doc)) continue;
    if ((part == DataPart::test) != (q.split == 2)) continue;
    // Its rank among the documents of its update (the old ones: among the old ones).
    const int64_t rank = q.doc - b.update_begin[size_t(c.update[size_t(q.doc)])];
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
    put_id(b.ids[size_t(docs[size_t(r)])], in + s, py + r * t);
  }
  DataSpec spec;
  spec.input_shape = {s + t};
  spec.vocab_size = b.vocab_size;
  spec.source_len = s;
  spec.valid_targets = b.trie;
  spec.documents = documents_of(chosen, b);
  auto ds = std::make_unique<Dataset>(x, y, spec);
  if (!val.empty()) ds->set_val_rows(at::tensor(val, at::kLong));
  return ds;
}

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

}  // namespace gr_rows
}  // namespace sculpt::data
