// PCRE2 (UTF + Unicode properties, JIT) for the pre-tokenizers' split patterns, e.g. GPT-2's
// `'s|'t|... ?\p{L}+| ?\p{N}+|...`. Subjects must be valid UTF-8 (checked once, on input).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sculpt::text {

class Regex {
 public:
  // Throws std::invalid_argument with PCRE2's message when `pattern` does not compile.
  // `origin` (a file and JSON path) starts the message of a match that fails: PCRE2's match
  // limits stop a pattern that backtracks without end, as a UserError.
  explicit Regex(const std::string& pattern, std::string origin = "");
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Every non-overlapping match of the pattern in `s`, left to right, as [start, end) bytes.
  void find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const;
  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_, origin_;
  void* code_ = nullptr;  // pcre2_code_8
};

// `text` with regex metacharacters escaped, for a literal pattern.
std::string regex_escape(std::string_view text);

}  // namespace sculpt::text
