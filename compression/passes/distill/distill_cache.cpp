#include "compression/passes/distill/distill_cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include <cstdio>
#include <cstring>
#include <fstream>

#include "core/error.h"
#include "core/logging/logging.h"

namespace sculpt::compression::distill_detail {

namespace fs = std::filesystem;

uint64_t fnv1a(const void* data, size_t n, uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

uint64_t hash_file(const fs::path& p, uint64_t h) {
  std::ifstream in(p, std::ios::binary);
  std::vector<char> buf(1 << 16);
  while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0)
    h = fnv1a(buf.data(), static_cast<size_t>(in.gcount()), h);
  return h;
}

OfflineCache::~OfflineCache() {
  if (map_ && map_ != MAP_FAILED) ::munmap(map_, size_);
}

std::unique_ptr<OfflineCache> OfflineCache::open_or_build(
    const fs::path& dir, uint64_t key, const std::vector<int64_t>& row_shape, int64_t k,
    const std::function<at::Tensor(const at::Tensor& rows)>& teacher_rows, int64_t rows) {
  auto cache = std::unique_ptr<OfflineCache>(new OfflineCache());
  cache->shape_ = row_shape;
  cache->k_ = k;
  const int64_t classes = row_shape.back();
  int64_t per_row = 1;
  for (auto d : row_shape) per_row *= d;
  cache->per_row_ = k > 0 ? per_row / classes * k : per_row;
  cache->rows_ = rows;
  std::error_code ec;
  fs::create_directories(dir, ec);
  char name[32];
  std::snprintf(name, sizeof name, "%016llx.bin", static_cast<unsigned long long>(key));
  const fs::path file = dir / name;
  if (cache->map(file, key)) {
    log::info("distill: reusing the offline teacher outputs in ", file.string());
    return cache;
  }
  log::info("distill: computing the teachers' outputs for ", rows, " rows into ",
            file.string());
  // Per process: the ranks of a data-parallel run may write the same cache at once.
  const fs::path tmp = file.string() + ".tmp" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    SCULPT_CHECK(out.good(), tmp.string(), ": cannot write the distillation cache");
    const uint64_t header[5] = {0x444b54504c554353ull, static_cast<uint64_t>(rows),
                                static_cast<uint64_t>(cache->per_row_),
                                static_cast<uint64_t>(k), key};
    out.write(reinterpret_cast<const char*>(header), sizeof header);
    std::vector<at::Tensor> indices;
    constexpr int64_t kChunk = 256;
    for (int64_t r = 0; r < rows; r += kChunk) {
      auto ids = at::arange(r, std::min(rows, r + kChunk), at::kLong);
      auto logits = teacher_rows(ids).to(at::kCPU).to(at::kFloat).contiguous();
      if (k > 0) {
        auto [values, idx] = logits.topk(k, -1);
        logits = values.contiguous();
        indices.push_back(idx.to(at::kInt).contiguous());
      }
      out.write(static_cast<const char*>(logits.data_ptr()),
                static_cast<std::streamsize>(logits.numel() * 4));
    }
    for (const auto& idx : indices)
      out.write(static_cast<const char*>(idx.data_ptr()),
                static_cast<std::streamsize>(idx.numel() * 4));
    out.flush();
    SCULPT_CHECK(out.good(), tmp.string(), ": writing the distillation cache failed");
  }
  fs::rename(tmp, file);
  SCULPT_CHECK(cache->map(file, key), file.string(), ": cannot read back the cache just written");
  return cache;
}

at::Tensor OfflineCache::logits(const at::Tensor& rows, c10::Device device) const {
  auto values = values_.index_select(0, rows.to(at::kCPU));
  std::vector<int64_t> shape = {rows.size(0)};
  shape.insert(shape.end(), shape_.begin(), shape_.end());
  if (k_ == 0) return values.view(shape).to(device);
  std::vector<int64_t> top_shape = shape;
  top_shape.back() = k_;
  auto idx = indices_.index_select(0, rows.to(at::kCPU)).to(at::kLong).view(top_shape);
  // Classes outside the top k get a logit so low their probability is 0.
  auto full = at::full(shape, -1e9, at::kFloat);
  full.scatter_(-1, idx, values.view(top_shape));
  return full.to(device);
}

bool OfflineCache::map(const fs::path& file, uint64_t key) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st{};
  const bool sized = ::fstat(fd, &st) == 0;
  const size_t want = 40 + static_cast<size_t>(rows_ * per_row_) * (k_ > 0 ? 8 : 4);
  if (!sized || static_cast<size_t>(st.st_size) != want) {
    ::close(fd);
    return false;
  }
  void* m = ::mmap(nullptr, want, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) return false;
  uint64_t header[5];
  std::memcpy(header, m, sizeof header);
  if (header[0] != 0x444b54504c554353ull || header[1] != static_cast<uint64_t>(rows_) ||
      header[2] != static_cast<uint64_t>(per_row_) || header[3] != static_cast<uint64_t>(k_) ||
      header[4] != key) {
    ::munmap(m, want);
    return false;
  }
  map_ = m;
  size_ = want;
  auto* base = static_cast<char*>(m) + 40;
  values_ = at::from_blob(base, {rows_, per_row_}, at::kFloat);
  if (k_ > 0)
    indices_ = at::from_blob(base + rows_ * per_row_ * 4, {rows_, per_row_}, at::kInt);
  return true;
}

}  // namespace sculpt::compression::distill_detail
