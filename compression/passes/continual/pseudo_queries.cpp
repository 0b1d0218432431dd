#include "compression/passes/continual/pseudo_queries.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "core/data/gr.h"
#include "core/error.h"

namespace sculpt::compression {

PseudoQueries make_pseudo_queries(const data::RetrievalDocs& docs, const PseudoQueryOptions& o,
                                  std::mt19937_64& rng) {
  SCULPT_ASSERT(o.per_doc >= 1, "make_pseudo_queries: per_doc < 1");
  const int64_t s = docs.source_len, t = docs.targets.size(1);
  const int64_t hi = o.span_max > 0 ? std::min(o.span_max, s) : s;
  const int64_t lo = std::min(o.span_min > 0 ? o.span_min : hi, hi);
  auto below = [&](int64_t n) {  // in [0, n)
    return static_cast<int64_t>(rng() % static_cast<uint64_t>(n));
  };
  PseudoQueries out;
  const int64_t n = docs.size() * o.per_doc;
  out.rows = at::empty({n, s + 2 * t}, at::kLong);
  int64_t r = 0;
  for (int64_t d = 0; d < docs.size(); ++d) {
    const auto& text = docs.texts[size_t(d)];
    const auto len = static_cast<int64_t>(text.size());
    for (int64_t q = 0; q < o.per_doc; ++q, ++r) {
      const int64_t span = std::min(len, lo + below(hi - lo + 1));
      const int64_t start = below(len - span + 1);
      data::TokenSeq query(text.begin() + start, text.begin() + start + span);
      out.rows[r].narrow(0, 0, s + t).copy_(docs.input_row(query, d));
      out.rows[r].narrow(0, s + t, t).copy_(docs.targets[d]);
      out.doc.push_back(d);
      out.start.push_back(start);
      out.length.push_back(span);
    }
  }
  return out;
}

}  // namespace sculpt::compression
