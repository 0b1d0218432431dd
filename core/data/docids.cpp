#include "core/data/docids.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "core/data/dataset.h"
#include "core/error.h"

namespace sculpt::data {

// ---- IdTrie ----

IdTrie::IdTrie() : nodes_(1) {}

int64_t IdTrie::child(int64_t node, int64_t token) const {
  const auto& next = nodes_[size_t(node)].next;
  auto it = std::lower_bound(next.begin(), next.end(), std::make_pair(token, int64_t{-1}));
  return it != next.end() && it->first == token ? it->second : -1;
}

void IdTrie::insert(const TokenSeq& seq) {
  SCULPT_CHECK(!seq.empty(), "an empty document ID");
  int64_t node = 0;
  for (int64_t t : seq) {
    SCULPT_CHECK(!nodes_[size_t(node)].end, "document ID ", at::IntArrayRef(seq),
                 " extends another document's ID (IDs must be prefix-free)");
    int64_t c = child(node, t);
    if (c < 0) {
      c = static_cast<int64_t>(nodes_.size());
      nodes_.emplace_back();
      auto& next = nodes_[size_t(node)].next;
      next.insert(std::lower_bound(next.begin(), next.end(), std::make_pair(t, int64_t{-1})),
                  {t, c});
    }
    node = c;
  }
  SCULPT_CHECK(!nodes_[size_t(node)].end, "document ID ", at::IntArrayRef(seq),
               " is given to two documents");
  SCULPT_CHECK(nodes_[size_t(node)].next.empty(), "document ID ", at::IntArrayRef(seq),
               " is a prefix of another document's ID (IDs must be prefix-free)");
  nodes_[size_t(node)].end = true;
  ++count_;
}

std::vector<int64_t> IdTrie::allowed(int64_t node) const {
  std::vector<int64_t> out;
  for (const auto& [t, c] : nodes_[size_t(node)].next) out.push_back(t);
  return out;
}

int64_t IdTrie::walk(const TokenSeq& prefix) const {
  int64_t node = 0;
  for (int64_t t : prefix) {
    node = child(node, t);
    if (node < 0) return -1;
  }
  return node;
}

void IdTrie::remove(const TokenSeq& seq) {
  std::vector<std::pair<int64_t, int64_t>> path;  // (parent, token) down to the end node
  int64_t node = 0;
  for (int64_t t : seq) {
    const int64_t c = child(node, t);
    SCULPT_CHECK(c >= 0, "document ID ", at::IntArrayRef(seq), " is not in the ID trie");
    path.emplace_back(node, t);
    node = c;
  }
  SCULPT_CHECK(nodes_[size_t(node)].end, "document ID ", at::IntArrayRef(seq),
               " is not in the ID trie");
  nodes_[size_t(node)].end = false;
  --count_;
  // Unlink the nodes that lead to no sequence any more (they stay allocated, unreachable).
  for (auto it = path.rbegin(); it != path.rend(); ++it) {
    if (nodes_[size_t(node)].end || !nodes_[size_t(node)].next.empty()) break;
    auto& next = nodes_[size_t(it->first)].next;
    next.erase(std::lower_bound(next.begin(), next.end(), std::make_pair(it->second, int64_t{-1})));
    node = it->first;
  }
}

bool IdTrie::contains(const TokenSeq& seq) const {
  const int64_t n = walk(seq);
  return n >= 0 && nodes_[size_t(n)].end;
}

// ---- k-means, TF-IDF ----

std::vector<int64_t> kmeans(const at::Tensor& x, int64_t k, int64_t iters, at::Generator& gen,
                            at::Tensor* centers_out) {
  const int64_t n = x.size(0);
  k = std::min(k, n);
  auto centers = x.index_select(0, at::randperm(n, gen, at::kLong).narrow(0, 0, k)).clone();
  at::Tensor assign;
  for (int64_t it = 0; it < iters; ++it) {
    assign = at::mm(x, centers.t()).argmax(1);
    auto sums = at::zeros_like(centers).index_add_(0, assign, x);
    auto counts = at::bincount(assign, {}, k);
    auto keep = counts.eq(0).unsqueeze(1);  // an empty cluster keeps its center
    sums = at::where(keep, centers, sums);
    centers = sums / sums.norm(2, {1}, true).clamp_min(1e-12);
  }
  assign = at::mm(x, centers.t()).argmax(1).contiguous();
  if (centers_out) *centers_out = centers;
  return std::vector<int64_t>(assign.data_ptr<int64_t>(), assign.data_ptr<int64_t>() + n);
}

at::Tensor tfidf_vectors(const std::vector<TokenSeq>& docs, int64_t n_idf, int64_t vocab,
                         int64_t dims, uint64_t seed) {
  std::vector<double> df(size_t(vocab), 0.0);
  for (int64_t i = 0; i < n_idf; ++i) {
    auto d = docs[size_t(i)];
    std::sort(d.begin(), d.end());
    d.erase(std::unique(d.begin(), d.end()), d.end());
    for (auto t : d) df[size_t(t)] += 1;
  }
  const bool project = dims > 0 && dims < vocab;
  const int64_t width = project ? dims : vocab;
  at::Tensor proj;
  if (project) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    proj = at::randn({vocab, dims}, gen) / std::sqrt(static_cast<double>(dims));
  }
  const auto n = static_cast<int64_t>(docs.size());
  auto out = at::zeros({n, width});
  auto acc = out.accessor<float, 2>();
  const float* p = project ? proj.data_ptr<float>() : nullptr;
  for (int64_t i = 0; i < n; ++i) {
    std::map<int64_t, double> tf;
    for (auto t : docs[size_t(i)]) tf[t] += 1.0;
    for (const auto& [t, c] : tf) {
      const double w = c / static_cast<double>(docs[size_t(i)].size()) *
                       (std::log((1.0 + n_idf) / (1.0 + df[size_t(t)])) + 1.0);
      if (!project) {
        acc[i][t] += static_cast<float>(w);
      } else {
        for (int64_t j = 0; j < dims; ++j) acc[i][j] += static_cast<float>(w) * p[t * dims + j];
      }
    }
  }
  return out / out.norm(2, {1}, true).clamp_min(1e-12);
}

// ---- IdTree ----

int64_t SemanticIdOptions::fill() const {
  return std::max<int64_t>(2, static_cast<int64_t>(std::floor(branch * (1.0 - reserve))));
}

TokenSeq semantic_tokens(const DigitPath& path, int64_t base, int64_t branch) {
  TokenSeq out;
  for (size_t l = 0; l < path.size(); ++l)
    out.push_back(base + static_cast<int64_t>(l) * branch + path[l]);
  out.push_back(token::eos);
  return out;
}

IdTree::IdTree(const at::Tensor& vectors, SemanticIdOptions o) : o_(o) {
  SCULPT_CHECK(o_.branch >= 2, "semantic IDs: branch ", o_.branch, " must be at least 2");
  SCULPT_CHECK(o_.fill() <= o_.branch, "semantic IDs: reserve ", o_.reserve,
               " leaves fewer than 2 of ", o_.branch, " slots per node");
  const int64_t n = vectors.size(0);
  paths_.resize(size_t(n));
  removed_.assign(size_t(n), false);
  std::vector<int64_t> docs(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) docs[size_t(i)] = i;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(o_.seed));
  build(vectors.contiguous(), docs, -1, {}, gen);
}

int64_t IdTree::new_node(int64_t parent, DigitPath prefix, bool leaf) {
  Node node;
  node.parent = parent;
  node.depth = static_cast<int64_t>(prefix.size());
  node.prefix = std::move(prefix);
  node.leaf = leaf;
  nodes_.push_back(std::move(node));
  return static_cast<int64_t>(nodes_.size()) - 1;
}

void IdTree::put_in_leaf(int64_t leaf, int64_t doc) {
  auto& node = nodes_[size_t(leaf)];
  DigitPath path = node.prefix;
  path.push_back(node.next_slot++);
  node.docs.push_back(doc);
  paths_[size_t(doc)] = std::move(path);
}

namespace {

// Documents a subtree can hold when `levels` digits are left: fill^levels (saturating).
int64_t capacity(int64_t fill, int64_t levels) {
  int64_t c = 1;
  for (int64_t l = 0; l < levels; ++l) {
    if (c > std::numeric_limits<int64_t>::max() / fill) return std::numeric_limits<int64_t>::max();
    c *= fill;
  }
  return c;
}

// k-means does not balance its clusters; a cluster larger than a child subtree can hold would
// run out of digits. Reassigns greedily, most similar (document, center) pairs first, each
// center taking at most `cap` documents. Deterministic (ties by document, then center).
std::vector<std::vector<int64_t>> capacitated_groups(const at::Tensor& x, const at::Tensor& centers,
                                                     const std::vector<int64_t>& docs,
                                                     int64_t cap) {
  const int64_t n = x.size(0), k = centers.size(0);
  auto sim = at::mm(x, centers.t()).contiguous();
  const float* s = sim.data_ptr<float>();
  std::vector<int64_t> order(static_cast<size_t>(n * k));
  for (int64_t i = 0; i < n * k; ++i) order[size_t(i)] = i;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return s[a] > s[b]; });
  std::vector<std::vector<int64_t>> groups(static_cast<size_t>(k));
  std::vector<bool> placed(static_cast<size_t>(n), false);
  for (int64_t pair : order) {
    const int64_t i = pair / k, c = pair % k;
    if (placed[size_t(i)] || static_cast<int64_t>(groups[size_t(c)].size()) >= cap) continue;
    placed[size_t(i)] = true;
    groups[size_t(c)].push_back(docs[size_t(i)]);
  }
  return groups;
}

}  // namespace

int64_t IdTree::build(const at::Tensor& vectors, const std::vector<int64_t>& docs,
                      int64_t parent, DigitPath prefix, at::Generator& gen) {
  const int64_t fill = o_.fill();
  const auto count = static_cast<int64_t>(docs.size());
  const auto depth = static_cast<int64_t>(prefix.size());
  // Only the root can fail this: below it, clusters are capped at what a child can hold.
  SCULPT_CHECK(count <= capacity(fill, o_.max_depth - depth), "semantic IDs: ", count,
               " documents do not fit ", o_.max_depth, " digits of ", fill, " slots (branch ",
               o_.branch, " less the reserve) below the prefix ", at::IntArrayRef(prefix),
               "; raise the ID max_depth or branch");
  const bool leaf = count <= fill;
  const int64_t id = new_node(parent, prefix, leaf);
  auto rows = at::tensor(docs, at::kLong);
  auto x = vectors.index_select(0, rows);
  nodes_[size_t(id)].sum = x.sum(0);
  nodes_[size_t(id)].count = count;
  if (leaf) {
    for (auto d : docs) put_in_leaf(id, d);
    return id;
  }
  at::Tensor centers;
  auto assign = kmeans(x, fill, o_.kmeans_iters, gen, &centers);
  std::vector<std::vector<int64_t>> groups(static_cast<size_t>(fill));
  for (int64_t i = 0; i < count; ++i) groups[size_t(assign[size_t(i)])].push_back(docs[size_t(i)]);
  const int64_t child_cap = capacity(fill, o_.max_depth - depth - 1);
  if (std::any_of(groups.begin(), groups.end(),
                  [&](const auto& g) { return static_cast<int64_t>(g.size()) > child_cap; }))
    groups = capacitated_groups(x, centers, docs, child_cap);
  groups.erase(std::remove_if(groups.begin(), groups.end(),
                              [](const auto& g) { return g.empty(); }),
               groups.end());
  if (groups.size() < 2) {  // identical vectors: split in order, evenly
    groups.assign(size_t(fill), {});
    for (int64_t i = 0; i < count; ++i) groups[size_t(i * fill / count)].push_back(docs[size_t(i)]);
  }
  for (auto& g : groups) {
    DigitPath p = prefix;
    const int64_t digit = nodes_[size_t(id)].next_slot++;
    p.push_back(digit);
    const int64_t c = build(vectors, g, id, std::move(p), gen);
    nodes_[size_t(id)].children.emplace_back(digit, c);
  }
  return id;
}

void IdTree::add_vector(int64_t node, const at::Tensor& v) {
  for (; node >= 0; node = nodes_[size_t(node)].parent) {
    nodes_[size_t(node)].sum = nodes_[size_t(node)].sum.defined()
                                   ? nodes_[size_t(node)].sum + v
                                   : v.clone();
    nodes_[size_t(node)].count += 1;
  }
}

int64_t IdTree::add(const at::Tensor& vector) {
  SCULPT_CHECK(!nodes_.empty(), "semantic IDs: no tree to add to");
  const auto v = vector.reshape({-1}).to(at::kFloat);
  int64_t node = 0;
  while (!nodes_[size_t(node)].leaf) {
    int64_t best = -1;
    double best_sim = -2.0;
    for (const auto& [digit, c] : nodes_[size_t(node)].children) {
      const auto& s = nodes_[size_t(c)].sum;
      const double sim = (s.dot(v) / s.norm().clamp_min(1e-12)).item<double>();
      if (sim > best_sim) best_sim = sim, best = c;
    }
    node = best;
  }
  const auto doc = static_cast<int64_t>(paths_.size());
  paths_.emplace_back();
  removed_.push_back(false);
  if (nodes_[size_t(node)].next_slot >= o_.branch) {
    // The leaf is full: open a new leaf in the nearest ancestor with a reserved slot left.
    int64_t up = nodes_[size_t(node)].parent;
    while (up >= 0 && nodes_[size_t(up)].next_slot >= o_.branch) up = nodes_[size_t(up)].parent;
    SCULPT_CHECK(up >= 0, "semantic IDs: no reserved slot left on the path of a new document ",
                 "(prefix ", at::IntArrayRef(nodes_[size_t(node)].prefix),
                 "); raise the ID reserve or branch");
    DigitPath p = nodes_[size_t(up)].prefix;
    const int64_t digit = nodes_[size_t(up)].next_slot++;
    p.push_back(digit);
    const int64_t leaf = new_node(up, std::move(p), true);
    nodes_[size_t(up)].children.emplace_back(digit, leaf);
    node = leaf;
    ++leaf_splits_;
  }
  put_in_leaf(node, doc);
  add_vector(node, v);
  return doc;
}

void IdTree::remove(int64_t doc) {
  SCULPT_CHECK(doc >= 0 && doc < static_cast<int64_t>(paths_.size()), "semantic IDs: no document ",
               doc);
  removed_[size_t(doc)] = true;
}

}  // namespace sculpt::data
