// A token <-> id table with string_view lookups (no allocation per lookup).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sculpt::text::detail {

class Vocab {
 public:
  // Adds token -> id; a token seen twice keeps the last id (as a JSON map does).
  void add(std::string token, int32_t id) { pending_.emplace_back(std::move(token), id); }
  // Call once after the last add().
  void finish() {
    int32_t max_id = -1;
    for (const auto& [t, id] : pending_) max_id = std::max(max_id, id);
    tokens_.assign(static_cast<size_t>(max_id + 1), std::string());
    has_.assign(static_cast<size_t>(max_id + 1), false);
    for (auto& [t, id] : pending_) {
      tokens_[static_cast<size_t>(id)] = std::move(t);
      has_[static_cast<size_t>(id)] = true;
    }
    pending_.clear();
    index_.reserve(tokens_.size() * 2);
    for (size_t id = 0; id < tokens_.size(); ++id)
      if (has_[id]) index_[tokens_[id]] = static_cast<int32_t>(id);
  }
  std::optional<int32_t> find(std::string_view token) const {
    const auto it = index_.find(token);
    if (it == index_.end()) return std::nullopt;
    return it->second;
  }
  const std::string* token(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= tokens_.size() || !has_[static_cast<size_t>(id)])
      return nullptr;
    return &tokens_[static_cast<size_t>(id)];
  }
  int64_t size() const { return static_cast<int64_t>(index_.size()); }
  int64_t id_bound() const { return static_cast<int64_t>(tokens_.size()); }

 private:
  std::vector<std::pair<std::string, int32_t>> pending_;
  std::vector<std::string> tokens_;
  std::vector<bool> has_;
  std::unordered_map<std::string_view, int32_t> index_;
};

}  // namespace sculpt::text::detail
