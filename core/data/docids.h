// Document identifiers for generative retrieval (a model that decodes a document's ID from a
// query):
//  - atomic IDs: one token per document;
//  - semantic IDs: a digit path per document from recursive k-means over document vectors.
//    Every internal node splits its documents into at most `fill` clusters out of `branch`
//    digit slots; a node of at most `fill` documents is a leaf whose documents take the digits
//    0..n-1. The slots above `fill` are reserved for documents that arrive later (IdTree).
//    k-means clusters larger than a child subtree can hold (fill^(digits left)) are rebalanced
//    by a capacitated greedy assignment to the same centers.
//    Documents sit only at leaves, so no ID is a prefix of another.
// Digits are position-specific tokens: digit d at depth l is token base + l * branch + d, so a
// decoder never has to tell levels apart by position alone.
// IdTrie: the set of valid ID token sequences (each ended by token::eos), for constrained
// decoding.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace sculpt::data {

using TokenSeq = std::vector<int64_t>;

// A prefix trie over token sequences. Node 0 is the root.
class IdTrie {
 public:
  IdTrie();
  // Adds one sequence; a UserError when it is already there or when one of the two would be a
  // prefix of the other (IDs must be prefix-free).
  void insert(const TokenSeq& seq);
  // The child of `node` by `token`, or -1.
  int64_t child(int64_t node, int64_t token) const;
  // Tokens that continue a valid sequence after `node`, ascending.
  std::vector<int64_t> allowed(int64_t node) const;
  // The node a prefix leads to, or -1 when it is not the prefix of a valid sequence.
  int64_t walk(const TokenSeq& prefix) const;
  bool contains(const TokenSeq& seq) const;
  // Takes a sequence out (a removed document): its branch is pruned, so allowed() never leads
  // to it again. UserError when it is not there.
  void remove(const TokenSeq& seq);
  int64_t size() const { return count_; }  // sequences held
  bool is_end(int64_t node) const { return nodes_[size_t(node)].end; }

 private:
  struct Node {
    std::vector<std::pair<int64_t, int64_t>> next;  // (token, child), ascending by token
    bool end = false;
  };
  std::vector<Node> nodes_;
  int64_t count_ = 0;
};

struct SemanticIdOptions {
  int64_t branch = 10;        // digit slots per node (tokens per level)
  double reserve = 0.2;       // fraction of each node's slots kept free for later documents
  int64_t max_depth = 6;      // longest digit path
  int64_t kmeans_iters = 12;  // Lloyd iterations per node
  int64_t seed = 0;
  // Clusters / documents per node at build time: floor(branch * (1 - reserve)), at least 2.
  int64_t fill() const;
};

// A document's ID as digits, one per level (leaf slot last).
using DigitPath = std::vector<int64_t>;

// The ID tree: built by recursive k-means, then extended one document at a time. Paths handed
// out are never handed out again, even after remove().
class IdTree {
 public:
  // vectors: [N, D] float, rows L2-normalized; document i gets paths()[i].
  IdTree(const at::Tensor& vectors, SemanticIdOptions o);
  const std::vector<DigitPath>& paths() const { return paths_; }
  // Places a new document (vector [D], L2-normalized) next to its nearest neighbours: down the
  // tree by the most similar centroid to a leaf, in the leaf's next free slot. A full leaf is
  // split locally: a new sibling leaf in a reserved slot of its parent (or, when the parent is
  // full too, a new branch higher up). A UserError when no reserved slot is left anywhere on
  // the path. Returns the new document's index in paths().
  int64_t add(const at::Tensor& vector);
  // Retires document `doc`: its path stays taken.
  void remove(int64_t doc);
  bool removed(int64_t doc) const { return removed_[size_t(doc)]; }
  int64_t leaf_splits() const { return leaf_splits_; }

 private:
  struct Node {
    int64_t parent = -1;
    int64_t depth = 0;
    DigitPath prefix;
    std::vector<std::pair<int64_t, int64_t>> children;  // (digit, node); internal nodes
    std::vector<int64_t> docs;                          // leaf: documents, digit = position
    int64_t next_slot = 0;  // digits handed out so far (only grows)
    bool leaf = true;
    at::Tensor sum;  // sum of the vectors below (centroid direction)
    int64_t count = 0;
  };
  int64_t build(const at::Tensor& vectors, const std::vector<int64_t>& docs, int64_t parent,
                DigitPath prefix, at::Generator& gen);
  int64_t new_node(int64_t parent, DigitPath prefix, bool leaf);
  void put_in_leaf(int64_t leaf, int64_t doc);
  void add_vector(int64_t node, const at::Tensor& v);
  SemanticIdOptions o_;
  std::vector<Node> nodes_;
  std::vector<DigitPath> paths_;
  std::vector<bool> removed_;
  int64_t leaf_splits_ = 0;
};

// The ID token sequence of a digit path: base + level * branch + digit per level, then eos.
TokenSeq semantic_tokens(const DigitPath& path, int64_t base, int64_t branch);
// Recursive k-means over `vectors`' rows (plain k-means++-free Lloyd from random rows).
// Returns per row the cluster in [0, k) (and the unit centers [k, D] in *centers_out).
// Deterministic for a generator state.
std::vector<int64_t> kmeans(const at::Tensor& vectors, int64_t k, int64_t iters,
                            at::Generator& gen, at::Tensor* centers_out = nullptr);
// TF-IDF rows of token documents ([N, vocab] dense, then a fixed random projection to `dims`
// columns when dims > 0 and < vocab), L2-normalized. idf from `idf_docs` (the first `n_idf`
// documents), so documents added later are scored against the original corpus.
at::Tensor tfidf_vectors(const std::vector<TokenSeq>& docs, int64_t n_idf, int64_t vocab,
                         int64_t dims, uint64_t seed);

}  // namespace sculpt::data
