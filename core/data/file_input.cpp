#include "core/data/file_input.h"

#include <zlib.h>

#include <cstdio>
#include <filesystem>

namespace sculpt::data {

std::string read_maybe_gz(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  SCULPT_CHECK(f != nullptr, path, ": cannot open");
  std::string out;
  // gzip's trailer holds the uncompressed size mod 2^32: reserve it, so the buffer is not
  // regrown (and briefly doubled) while reading tens of MB.
  if (std::FILE* raw = std::fopen(path.c_str(), "rb")) {
    unsigned char head[2] = {0, 0}, tail[4] = {0, 0, 0, 0};
    if (std::fread(head, 1, 2, raw) == 2 && head[0] == 0x1f && head[1] == 0x8b &&
        std::fseek(raw, -4, SEEK_END) == 0 && std::fread(tail, 1, 4, raw) == 4)
      out.reserve(tail[0] | (tail[1] << 8) | (tail[2] << 16) | (size_t(tail[3]) << 24));
    std::fclose(raw);
  }
  char buf[1 << 16];
  int n = 0;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  int err = 0;
  const char* msg = gzerror(f, &err);
  std::string why = err != Z_OK && err != Z_STREAM_END ? msg : "";
  gzclose(f);
  SCULPT_CHECK(n == 0 && why.empty(), path, ": corrupt or truncated gzip data (", why, ")");
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
