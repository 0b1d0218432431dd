// UTF-8 and Unicode helpers for the tokenizers: decoding, validation, lossy repair, and the
// character classes and normalization forms of ICU (no hand-written tables). The predicates
// follow Rust's `char` methods, which Hugging Face `tokenizers` uses.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sculpt::text {

// The code point at s[i] (advancing i past it); s must be valid UTF-8.
inline char32_t next_char(std::string_view s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  if (b0 < 0xE0) {
    char32_t c = ((b0 & 0x1F) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3F);
    i += 2;
    return c;
  }
  if (b0 < 0xF0) {
    char32_t c = ((b0 & 0x0F) << 12) | ((static_cast<unsigned char>(s[i + 1]) & 0x3F) << 6) |
                 (static_cast<unsigned char>(s[i + 2]) & 0x3F);
    i += 3;
    return c;
  }
  char32_t c = ((b0 & 0x07) << 18) | ((static_cast<unsigned char>(s[i + 1]) & 0x3F) << 12) |
               ((static_cast<unsigned char>(s[i + 2]) & 0x3F) << 6) |
               (static_cast<unsigned char>(s[i + 3]) & 0x3F);
  i += 4;
  return c;
}

// Byte length of the UTF-8 sequence that starts with `lead`.
inline size_t char_len(unsigned char lead) {
  return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}

void append_utf8(std::string& out, char32_t c);

// Offset of the first byte that is not part of valid UTF-8, or npos when all of `s` is valid.
size_t find_invalid_utf8(std::string_view s);
// `bytes` with every maximal invalid subpart replaced by U+FFFD (as Python's
// bytes.decode(errors="replace") and Rust's String::from_utf8_lossy do).
std::string utf8_lossy(std::string_view bytes);

bool is_ascii(std::string_view s);

// Character classes (Rust's char methods, from ICU's properties).
bool is_whitespace(char32_t c);       // White_Space
bool is_alphanumeric(char32_t c);     // Alphabetic or a number (N*)
bool is_numeric(char32_t c);          // N* (Nd, Nl, No)
bool is_punctuation(char32_t c);      // P*
bool is_other(char32_t c);            // C* (Cc, Cf, Cs, Co, Cn)
bool is_mark(char32_t c);             // M* (Mn, Mc, Me)
bool is_nonspacing_mark(char32_t c);  // Mn (what StripAccents removes)
bool is_word_char(char32_t c);        // regex \w: Alphabetic, M*, Nd, Pc, Join_Control

enum class NormalForm { NFC, NFD, NFKC, NFKD };
// `s` in the normalization form (ICU's Normalizer2).
std::string normalize(std::string_view s, NormalForm form);
// The end offsets of `s`'s extended grapheme clusters (UAX #29, ICU's character break
// iterator), in order; the last is s.size(). `s` must be valid UTF-8.
void grapheme_ends(std::string_view s, std::vector<size_t>& ends);

// Per-character full lowercase mapping (Rust's char::to_lowercase; no final-sigma context).
std::string lowercase(std::string_view s);

}  // namespace sculpt::text
