// SentencePiece's precompiled character map: the normalizer of a `.model` file
// (normalizer_spec.precompiled_charsmap) and of tokenizer.json's `Precompiled` normalizer
// (base64 of the same bytes). Layout: a little-endian uint32 byte size of a Darts-clone double
// array trie, the trie's uint32 units, then the replacement strings, each ending with NUL. The
// trie maps a UTF-8 key (one or more characters) to the offset of its replacement.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sculpt::text::detail {

class CharsMap {
 public:
  // Reads the serialized map; false (and the map left empty) when it does not parse.
  bool parse(std::string_view blob);
  bool empty() const { return units_.empty(); }

  // SentencePiece's rule at s[pos..]: the longest key there, as (consumed bytes, replacement);
  // (0, {}) when no key starts there.
  std::pair<size_t, std::string_view> longest(std::string_view s, size_t pos) const;
  // Hugging Face `tokenizers`' lookup of a chunk s[begin, end): the replacement of the
  // shortest key that is a prefix of the chunk (the chunk's rest is dropped with it), or
  // nullopt. The search stops at a NUL byte.
  std::optional<std::string_view> first(std::string_view s, size_t begin, size_t end) const;

 private:
  // Calls `hit(key_end, value)` for each key that is a prefix of s[begin, end), shortest
  // first, until it returns false.
  template <class Hit>
  void prefixes(std::string_view s, size_t begin, size_t end, Hit&& hit) const;
  std::optional<std::string_view> replacement(uint32_t value) const;

  std::vector<uint32_t> units_;
  std::string strings_;  // with a NUL appended, so every replacement ends
};

// The bytes of base64 text (standard alphabet, '=' padding optional); nullopt when it is not
// base64.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace sculpt::text::detail
