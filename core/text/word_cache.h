// Word -> ids for the BPE models, shared by the threads of encode_batch: sharded locks, a
// bounded size (new words are not added once a shard is full).
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sculpt::text::detail {

class WordCache {
 public:
  bool get(std::string_view word, std::vector<int32_t>& out) const {
    auto& s = shard(word);
    std::lock_guard<std::mutex> lock(s.mutex);
    const auto it = s.map.find(word);
    if (it == s.map.end()) return false;
    out.insert(out.end(), it->second.begin(), it->second.end());
    return true;
  }
  void put(std::string_view word, const int32_t* ids, size_t n) const {
    auto& s = shard(word);
    std::lock_guard<std::mutex> lock(s.mutex);
    if (s.map.size() >= kShardCapacity) return;
    if (s.map.count(word)) return;
    s.keys.emplace_back(word);
    s.map.emplace(s.keys.back(), std::vector<int32_t>(ids, ids + n));
  }

 private:
  static constexpr size_t kShards = 16, kShardCapacity = 8192;
  struct Shard {
    std::mutex mutex;
    std::deque<std::string> keys;  // stable storage for the map's views
    std::unordered_map<std::string_view, std::vector<int32_t>> map;
  };
  Shard& shard(std::string_view w) const {
    return shards_[std::hash<std::string_view>()(w) % kShards];
  }
  mutable std::array<Shard, kShards> shards_;
};

}  // namespace sculpt::text::detail
