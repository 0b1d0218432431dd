// A read-only byte trie for common-prefix search (Unigram's lattice, SentencePiece models):
// built once from (key, value) pairs, then stored as flat sorted edge arrays.
#pragma once

#include <cstdint>
#include <map>
#include <string_view>
#include <vector>

namespace sculpt::text::detail {

class ByteTrie {
 public:
  // Adds `key` -> `value` (value >= 0); a key added twice keeps the last value.
  void add(std::string_view key, int32_t value) {
    int32_t node = 0;
    if (build_.empty()) build_.emplace_back();
    for (unsigned char b : key) {
      auto it = build_[static_cast<size_t>(node)].children.find(b);
      if (it == build_[static_cast<size_t>(node)].children.end()) {
        build_.emplace_back();
        it = build_[static_cast<size_t>(node)]
                 .children.emplace(b, static_cast<int32_t>(build_.size() - 1))
                 .first;
      }
      node = it->second;
    }
    build_[static_cast<size_t>(node)].value = value;
  }
  // Call once after the last add().
  void finish() {
    if (build_.empty()) build_.emplace_back();
    begin_.assign(build_.size() + 1, 0);
    value_.assign(build_.size(), -1);
    for (size_t n = 0; n < build_.size(); ++n) {
      value_[n] = build_[n].value;
      begin_[n] = static_cast<int32_t>(labels_.size());
      for (const auto& [b, child] : build_[n].children) {
        labels_.push_back(b);
        targets_.push_back(child);
      }
    }
    begin_[build_.size()] = static_cast<int32_t>(labels_.size());
    for (int b = 0; b < 256; ++b) root_[b] = -1;
    for (int32_t k = begin_[0]; k < begin_[1]; ++k)
      root_[labels_[static_cast<size_t>(k)]] = targets_[static_cast<size_t>(k)];
    build_.clear();
    build_.shrink_to_fit();
  }
  // The child of `node` (0: the root) along byte `b`, or -1.
  int32_t child(int32_t node, unsigned char b) const {
    if (node == 0) return root_[b];
    const auto lo = static_cast<size_t>(begin_[static_cast<size_t>(node)]);
    const auto hi = static_cast<size_t>(begin_[static_cast<size_t>(node) + 1]);
    for (size_t k = lo; k < hi; ++k) {
      if (labels_[k] == b) return targets_[k];
      if (labels_[k] > b) break;
    }
    return -1;
  }
  int32_t value(int32_t node) const { return value_[static_cast<size_t>(node)]; }
  template <class Fn>  // fn(end, value) for every key that is a prefix of s[pos..]
  void prefixes(std::string_view s, size_t pos, Fn fn) const {
    int32_t node = 0;
    for (size_t k = pos; k < s.size(); ++k) {
      node = child(node, static_cast<unsigned char>(s[k]));
      if (node < 0) return;
      if (value_[static_cast<size_t>(node)] >= 0) fn(k + 1, value_[static_cast<size_t>(node)]);
    }
  }

 private:
  struct BuildNode {
    std::map<unsigned char, int32_t> children;
    int32_t value = -1;
  };
  std::vector<BuildNode> build_;
  std::vector<int32_t> begin_, value_, targets_;
  std::vector<unsigned char> labels_;
  int32_t root_[256] = {};
};

}  // namespace sculpt::text::detail
