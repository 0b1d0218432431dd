#include "core/text/charsmap.h"

#include <cstring>

#include "core/text/unicode.h"

namespace sculpt::text::detail {

bool CharsMap::parse(std::string_view blob) {
  units_.clear();
  strings_.clear();
  if (blob.size() < 4) return false;
  uint32_t trie_size;
  std::memcpy(&trie_size, blob.data(), 4);
  if (trie_size % 4 || trie_size > blob.size() - 4) return false;
  units_.resize(trie_size / 4);
  if (trie_size) std::memcpy(units_.data(), blob.data() + 4, trie_size);  // (no memcpy to null)
  strings_ = std::string(blob.substr(4 + trie_size));
  strings_ += '\0';
  return true;
}

// The Darts-clone unit layout: bit 8 has_leaf, the low 8 bits and bit 31 the label, bits
// 10..31 the offset (scaled by 2^8 when bit 9 is set); a leaf unit's low 31 bits its value.
template <class Hit>
void CharsMap::prefixes(std::string_view s, size_t begin, size_t end, Hit&& hit) const {
  if (units_.empty()) return;
  const auto& a = units_;
  auto offset = [](uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); };
  size_t node = offset(a[0]);
  for (size_t i = begin; i < end; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == 0) return;
    node ^= c;
    if (node >= a.size()) return;
    const uint32_t unit = a[node];
    if ((unit & ((1u << 31) | 0xFF)) != c) return;
    node ^= offset(unit);
    if ((unit >> 8) & 1) {
      if (node >= a.size()) return;
      if (!hit(i + 1, a[node] & ((1u << 31) - 1))) return;
    }
  }
}

std::optional<std::string_view> CharsMap::replacement(uint32_t value) const {
  if (value >= strings_.size()) return std::nullopt;
  const std::string_view r(strings_.c_str() + value);
  // A replacement that is not UTF-8 (a damaged map, or an offset into the middle of a
  // character) is no rule: what follows the normalizer reads only valid UTF-8.
  if (find_invalid_utf8(r) != std::string_view::npos) return std::nullopt;
  return r;
}

std::pair<size_t, std::string_view> CharsMap::longest(std::string_view s, size_t pos) const {
  size_t best_end = 0;
  uint32_t best_value = 0;
  prefixes(s, pos, s.size(), [&](size_t end, uint32_t value) {
    best_end = end;
    best_value = value;
    return true;
  });
  if (!best_end) return {0, {}};
  const auto r = replacement(best_value);
  if (!r) return {0, {}};
  return {best_end - pos, *r};
}

std::optional<std::string_view> CharsMap::first(std::string_view s, size_t begin,
                                                size_t end) const {
  std::optional<uint32_t> value;
  prefixes(s, begin, end, [&](size_t, uint32_t v) {
    value = v;
    return false;
  });
  if (!value) return std::nullopt;
  return replacement(*value);
}

std::optional<std::string> base64_decode(std::string_view text) {
  auto sextet = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    const int v = sextet(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return out;
}

}  // namespace sculpt::text::detail
