// distill's offline teacher: the teachers' outputs for every training row, computed once and
// memory-mapped from <run>/distill_cache/<key>.bin (issue on offline distillation).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <vector>

namespace sculpt::compression::distill_detail {

// FNV-1a 64 over bytes, chained (`h`: the hash so far).
uint64_t fnv1a(const void* data, size_t n, uint64_t h = 1469598103934665603ull);
// FNV-1a of a file's bytes, chained.
uint64_t hash_file(const std::filesystem::path& p, uint64_t h);

// The key hashes the training inputs, the normalization, the teachers' files and the cache
// settings, so a changed dataset or teacher never reads a stale cache. File: header
// {"SCULPTKD", rows, values per row, k (0: full rows), key} (5 x 8 bytes), then float32 values
// [rows, per_row] (k > 0: top-k values, then their int32 class indices).
class OfflineCache {
 public:
  ~OfflineCache();
  // The cache of `key` in `dir`, built from `teacher_rows` (dataset rows -> teacher outputs of
  // shape [B, row_shape...]) when it is missing or does not match.
  static std::unique_ptr<OfflineCache> open_or_build(
      const std::filesystem::path& dir, uint64_t key, const std::vector<int64_t>& row_shape,
      int64_t k, const std::function<at::Tensor(const at::Tensor& rows)>& teacher_rows,
      int64_t rows);
  // Teacher outputs for dataset rows `rows` [B], shaped [B, row_shape...].
  at::Tensor logits(const at::Tensor& rows, c10::Device device) const;

 private:
  OfflineCache() = default;
  bool map(const std::filesystem::path& file, uint64_t key);
  void* map_ = nullptr;
  size_t size_ = 0;
  int64_t rows_ = 0, per_row_ = 0, k_ = 0;
  std::vector<int64_t> shape_;
  at::Tensor values_, indices_;
};

}  // namespace sculpt::compression::distill_detail
