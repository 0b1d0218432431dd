// Reading helpers shared by the file-backed datasets (files.cpp, images_tables.cpp, text.cpp).
// Internal to core/data: every failure is a UserError that names the file.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/config/config.h"
#include "core/error.h"

namespace sculpt::data {

// The whole file, gunzipped when it is gzip (plain files are read through as they are).
std::string read_maybe_gz(const std::string& path);

// At most max_bytes + 1 bytes of the file, gunzipped when it is gzip: a caller that knows how
// large the file must be reads no more than that (and sees whether there is more).
// A gzip file may expand to at most gzip_limit(its size) bytes, whatever the caller allows:
// more (a gzip bomb) is a UserError naming the file and the limit, raised once the limit is
// read (memory stays below it).
std::string read_maybe_gz_at_most(const std::string& path, size_t max_bytes);

// The most a gzip file of `file_bytes` bytes may expand to: kGzipMaxRatio times its size (text
// and tables compress 3-20x; deflate's limit is 1032x), and at least kGzipMinLimit.
constexpr uint64_t kGzipMaxRatio = 128;
constexpr uint64_t kGzipMinLimit = uint64_t(64) << 20;
size_t gzip_limit(uint64_t file_bytes);

// `dir`/`name`.gz or `dir`/`name`, whichever exists first; a UserError naming both otherwise.
std::string find_maybe_gz(const std::string& dir, const std::string& name);

// Calls fn(line, line_no) for every non-empty line of `text`; line numbers start at 1 and a
// trailing '\r' is dropped, so CRLF files read the same.
template <class Fn>
void for_each_line(const std::string& text, Fn&& fn) {
  size_t begin = 0;
  for (int64_t line_no = 1; begin < text.size(); ++line_no) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + begin, end - begin);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty()) fn(line, line_no);
    begin = end + 1;
  }
}

// The typed options a dataset factory was registered with.
template <class T>
const T& options_of(const config::DataConfig& c) {
  SCULPT_ASSERT(c.options, "dataset options missing");
  return dynamic_cast<const T&>(*c.options);
}

}  // namespace sculpt::data
