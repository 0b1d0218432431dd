#include "core/data/file_input.h"

#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

namespace sculpt::data {

std::string read_maybe_gz(const std::string& path) {
  return read_maybe_gz_at_most(path, std::string().max_size() - 1);
}

size_t gzip_limit(uint64_t file_bytes) {
  const uint64_t by_ratio =
      file_bytes > (uint64_t(1) << 50) ? uint64_t(1) << 58 : file_bytes * kGzipMaxRatio;
  return static_cast<size_t>(std::max<uint64_t>(kGzipMinLimit, by_ratio));
}

std::string read_maybe_gz_at_most(const std::string& path, size_t max_bytes) {
  std::error_code ec;
  SCULPT_CHECK(!std::filesystem::exists(path, ec) || std::filesystem::is_regular_file(path, ec),
               path, ": not a regular file");
  gzFile f = gzopen(path.c_str(), "rb");
  SCULPT_CHECK(f != nullptr, path, ": cannot open");
  std::string out;
  // A gzip file expands to at most gzip_limit(its size): more is a gzip bomb (or text far more
  // repetitive than any data set), refused before it takes the memory. Plain files are their
  // own bound (gzread passes them through).
  bool gz = false;
  size_t limit = max_bytes;
  // gzip's trailer holds the uncompressed size mod 2^32: reserve it, so the buffer is not
  // regrown (and briefly doubled) while reading tens of MB. The trailer is the file's word:
  // no more than the limit, nor than max_bytes + 1.
  if (std::FILE* raw = std::fopen(path.c_str(), "rb")) {
    unsigned char head[2] = {0, 0}, tail[4] = {0, 0, 0, 0};
    gz = std::fread(head, 1, 2, raw) == 2 && head[0] == 0x1f && head[1] == 0x8b;
    if (gz && std::fseek(raw, -4, SEEK_END) == 0 && std::fread(tail, 1, 4, raw) == 4) {
      const size_t claimed = tail[0] | (tail[1] << 8) | (tail[2] << 16) | (size_t(tail[3]) << 24);
      const long file_size = std::ftell(raw);
      const size_t bound = gzip_limit(file_size > 0 ? uint64_t(file_size) : 0);
      limit = std::min(max_bytes, bound);
      out.reserve(std::min({claimed, bound + 1, max_bytes + 1}));
    } else if (gz) {
      limit = std::min(max_bytes, gzip_limit(0));
    }
    std::fclose(raw);
  }
  char buf[1 << 16];
  int n = 0;
  while (out.size() <= limit && (n = gzread(f, buf, sizeof buf)) > 0)
    out.append(buf, std::min(static_cast<size_t>(n), limit + 1 - out.size()));
  if (out.size() > limit) n = 0;  // stopped early: the rest is not read, nor checked
  int err = 0;
  const char* msg = gzerror(f, &err);
  std::string why = err != Z_OK && err != Z_STREAM_END ? msg : "";
  gzclose(f);
  SCULPT_CHECK(n == 0 && why.empty(), path, ": corrupt or truncated gzip data (", why, ")");
  if (gz && limit < max_bytes && out.size() > limit) {
    std::error_code size_ec;
    const auto file_bytes = std::filesystem::file_size(path, size_ec);
    throw UserError(path + ": gzip data that expands to more than " + std::to_string(limit) +
                    " bytes (a gzip file may expand to " + std::to_string(kGzipMaxRatio) +
                    " times its size, here " + std::to_string(size_ec ? 0 : file_bytes) +
                    " bytes, or to " + std::to_string(kGzipMinLimit >> 20) +
                    " MiB whatever its size); a gzip bomb? gunzip it to read it as it is");
  }
  return out;
}

std::string find_maybe_gz(const std::string& dir, const std::string& name) {
  namespace fs = std::filesystem;
  for (const auto& candidate : {name + ".gz", name}) {
    auto p = fs::path(dir) / candidate;
    if (fs::exists(p)) return p.string();
  }
  throw UserError(dir + ": missing " + name + "(.gz)");
}

}  // namespace sculpt::data
