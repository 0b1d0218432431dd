// ICU's properties and normalization behind the tokenizers' character classes.
#include "core/text/unicode.h"

#include <unicode/brkiter.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/ustring.h>
#include <unicode/utext.h>

#include <memory>
#include <stdexcept>

namespace sculpt::text {

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

namespace {
// Length of the valid UTF-8 sequence at s[i], or 0 with `*subpart` set to the length of the
// maximal invalid subpart (at least 1) when it is not valid.
size_t valid_seq(std::string_view s, size_t i, size_t* subpart) {
  const auto at = [&](size_t k) -> int {
    return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : -1;
  };
  const int b0 = at(0);
  if (b0 < 0x80) return 1;
  size_t need = 0;
  int lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    *subpart = 1;
    return 0;
  }
  for (size_t k = 1; k <= need; ++k) {
    const int b = at(k);
    const int l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) {
      *subpart = k;
      return 0;
    }
  }
  return need + 1;
}
}  // namespace

size_t find_invalid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t sub = 0;
    const size_t n = valid_seq(s, i, &sub);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    size_t sub = 0;
    const size_t n = valid_seq(bytes, i, &sub);
    if (n) {
      out.append(bytes.data() + i, n);
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      i += sub;
    }
  }
  return out;
}

bool is_ascii(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

bool is_whitespace(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D);
  return u_isUWhiteSpace(static_cast<UChar32>(c));
}

bool is_numeric(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_N_MASK) != 0;
}

bool is_alphanumeric(char32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
  return u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_ALPHABETIC) || is_numeric(c);
}

bool is_punctuation(char32_t c) {
  return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_P_MASK) != 0;
}

bool is_other(char32_t c) {
  return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_C_MASK) != 0;
}

bool is_mark(char32_t c) {
  if (c < 0x300) return false;
  return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_M_MASK) != 0;
}

bool is_nonspacing_mark(char32_t c) {
  if (c < 0x300) return false;
  return u_charType(static_cast<UChar32>(c)) == U_NON_SPACING_MARK;
}

bool is_word_char(char32_t c) {
  if (c < 0x80)
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || c == '_';
  const auto uc = static_cast<UChar32>(c);
  const auto mask = U_GET_GC_MASK(uc);
  return u_hasBinaryProperty(uc, UCHAR_ALPHABETIC) ||
         (mask & (U_GC_M_MASK | U_GC_ND_MASK | U_GC_PC_MASK)) ||
         u_hasBinaryProperty(uc, UCHAR_JOIN_CONTROL);
}

namespace {
const icu::Normalizer2* normalizer_for(NormalForm form) {
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* n = nullptr;
  switch (form) {
    case NormalForm::NFC:
      n = icu::Normalizer2::getNFCInstance(err);
      break;
    case NormalForm::NFD:
      n = icu::Normalizer2::getNFDInstance(err);
      break;
    case NormalForm::NFKC:
      n = icu::Normalizer2::getNFKCInstance(err);
      break;
    case NormalForm::NFKD:
      n = icu::Normalizer2::getNFKDInstance(err);
      break;
  }
  if (U_FAILURE(err) || !n) throw std::runtime_error("ICU normalizer unavailable");
  return n;
}
}  // namespace

std::string normalize(std::string_view s, NormalForm form) {
  if (is_ascii(s)) return std::string(s);
  const icu::Normalizer2* n = normalizer_for(form);
  UErrorCode err = U_ZERO_ERROR;
  const auto in =
      icu::UnicodeString::fromUTF8(icu::StringPiece(s.data(), static_cast<int32_t>(s.size())));
  if (n->isNormalized(in, err) && U_SUCCESS(err)) return std::string(s);
  err = U_ZERO_ERROR;
  const icu::UnicodeString out = n->normalize(in, err);
  if (U_FAILURE(err)) throw std::runtime_error("ICU normalization failed");
  std::string result;
  out.toUTF8String(result);
  return result;
}

void grapheme_ends(std::string_view s, std::vector<size_t>& ends) {
  ends.clear();
  // ASCII: every byte is a cluster but CR LF.
  if (is_ascii(s)) {
    for (size_t i = 0; i < s.size(); ++i)
      if (!(s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n')) ends.push_back(i + 1);
    return;
  }
  // A break iterator per thread (ICU's are not shared between threads), over the UTF-8 bytes
  // through a UText, so the boundaries are byte offsets.
  thread_local std::unique_ptr<icu::BreakIterator> it;
  UErrorCode err = U_ZERO_ERROR;
  if (!it) {
    it.reset(icu::BreakIterator::createCharacterInstance(icu::Locale::getRoot(), err));
    if (U_FAILURE(err) || !it) throw std::runtime_error("ICU character break iterator unavailable");
  }
  UText ut = UTEXT_INITIALIZER;
  utext_openUTF8(&ut, s.data(), static_cast<int64_t>(s.size()), &err);
  it->setText(&ut, err);
  if (U_FAILURE(err)) {
    utext_close(&ut);
    throw std::runtime_error("ICU character break iterator failed");
  }
  for (int32_t b = it->next(); b != icu::BreakIterator::DONE; b = it->next())
    ends.push_back(static_cast<size_t>(b));
  // The iterator keeps a pointer to the UText: leave it on an empty text before closing it.
  UText empty = UTEXT_INITIALIZER;
  err = U_ZERO_ERROR;
  utext_openUTF8(&empty, "", 0, &err);
  it->setText(&empty, err);
  utext_close(&ut);
  utext_close(&empty);
  if (ends.empty() || ends.back() != s.size()) ends.push_back(s.size());
}

std::string lowercase(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      out += static_cast<char>(b >= 'A' && b <= 'Z' ? b + 32 : b);
      ++i;
      continue;
    }
    const size_t start = i;
    const char32_t c = next_char(s, i);
    UChar src[2];
    int32_t src_len = 0;
    U16_APPEND_UNSAFE(src, src_len, static_cast<UChar32>(c));
    UChar dst[8];
    UErrorCode err = U_ZERO_ERROR;
    // "" is the root locale: no Turkish/Lithuanian rules, as Rust's to_lowercase.
    const int32_t n = u_strToLower(dst, 8, src, src_len, "", &err);
    if (U_FAILURE(err) || n <= 0) {
      out.append(s.data() + start, i - start);
      continue;
    }
    for (int32_t k = 0; k < n;) {
      UChar32 cp;
      U16_NEXT(dst, k, n, cp);
      append_utf8(out, static_cast<char32_t>(cp));
    }
  }
  return out;
}

}  // namespace sculpt::text
