// tokenizer.json normalizers: Unicode forms, Lowercase, StripAccents, Strip, Replace, Prepend,
// BertNormalizer, Precompiled and Sequence, with the semantics of Hugging Face `tokenizers`.
#include <nlohmann/json.hpp>

#include "core/text/charsmap.h"
#include "core/text/components.h"
#include "core/text/regex.h"
#include "core/text/unicode.h"

namespace sculpt::text::detail {

namespace {

class FormNormalizer : public Normalizer {
 public:
  explicit FormNormalizer(NormalForm form) : form_(form) {}
  void normalize(std::string& s) const override { s = text::normalize(s, form_); }

 private:
  NormalForm form_;
};

class LowercaseNormalizer : public Normalizer {
 public:
  void normalize(std::string& s) const override {
    if (is_ascii(s)) {
      for (char& c : s)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
      return;
    }
    s = lowercase(s);
  }
};

// Removes combining marks (the caller decomposes first, e.g. NFD then StripAccents):
// StripAccents removes every mark (Mn, Mc, Me), BertNormalizer only nonspacing ones (Mn),
// as `tokenizers` does.
void strip_marks(std::string& s, bool nonspacing_only) {
  if (is_ascii(s)) return;
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const size_t start = i;
    const char32_t c = next_char(s, i);
    if (!(nonspacing_only ? is_nonspacing_mark(c) : is_mark(c))) out.append(s, start, i - start);
  }
  s.swap(out);
}

class StripAccentsNormalizer : public Normalizer {
 public:
  void normalize(std::string& s) const override { strip_marks(s, false); }
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& s) const override {
    size_t begin = 0, end = s.size();
    if (left_) {
      size_t i = 0;
      while (i < s.size()) {
        size_t j = i;
        if (!is_whitespace(next_char(s, j))) break;
        i = j;
      }
      begin = i;
    }
    if (right_) {
      while (end > begin) {
        size_t k = end - 1;
        while (k > begin && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
        size_t j = k;
        if (!is_whitespace(next_char(s, j))) break;
        end = k;
      }
    }
    s = s.substr(begin, end - begin);
  }

 private:
  bool left_, right_;
};

// A `pattern` of Replace / Split: {"String": "..."} or {"Regex": "..."}.
std::unique_ptr<Regex> make_pattern(const nlohmann::json& j, const Where& where) {
  const auto& p = member(j, "pattern", where);
  const std::string origin = where.file + ": " + where.at("pattern").path;
  try {
    if (p.is_object() && p.contains("String") && p["String"].is_string())
      return std::make_unique<Regex>(regex_escape(p["String"].get<std::string>()), origin);
    if (p.is_object() && p.contains("Regex") && p["Regex"].is_string())
      return std::make_unique<Regex>(p["Regex"].get<std::string>(), origin);
  } catch (const std::invalid_argument& e) {
    fail(where.at("pattern"), e.what());
  }
  fail(where.at("pattern"), "expected {\"String\": ...} or {\"Regex\": ...}, got " + p.dump());
}

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::unique_ptr<Regex> re, std::string content)
      : re_(std::move(re)), content_(std::move(content)) {}
  void normalize(std::string& s) const override {
    thread_local std::vector<std::pair<size_t, size_t>> matches;
    re_->find_all(s, matches);
    if (matches.empty()) return;
    std::string out;
    out.reserve(s.size());
    size_t prev = 0;
    for (const auto& [a, b] : matches) {
      out.append(s, prev, a - prev);
      out += content_;
      prev = b;
    }
    out.append(s, prev, std::string::npos);
    s.swap(out);
  }

 private:
  std::unique_ptr<Regex> re_;
  std::string content_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  void normalize(std::string& s) const override {
    if (!s.empty()) s.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

bool is_chinese_char(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// BERT's: drop control characters, whitespace -> ' ', spaces around CJK ideographs, then
// optionally NFD + strip accents, then lowercase.
class BertNormalizer : public Normalizer {
 public:
  BertNormalizer(bool clean, bool chinese, bool strip_accents, bool lower)
      : clean_(clean), chinese_(chinese), strip_accents_(strip_accents), lower_(lower) {}
  void normalize(std::string& s) const override {
    if (clean_ || chinese_) {
      std::string out;
      out.reserve(s.size() + 8);
      size_t i = 0;
      while (i < s.size()) {
        const size_t start = i;
        const char32_t c = next_char(s, i);
        if (clean_) {
          const bool ws_control = c == '\t' || c == '\n' || c == '\r';
          if (c == 0 || c == 0xFFFD || (!ws_control && is_other(c))) continue;
          if (ws_control || is_whitespace(c)) {
            out += ' ';
            continue;
          }
        }
        if (chinese_ && c >= 0x3400 && is_chinese_char(c)) {
          out += ' ';
          out.append(s, start, i - start);
          out += ' ';
          continue;
        }
        out.append(s, start, i - start);
      }
      s.swap(out);
    }
    if (strip_accents_ && !is_ascii(s)) {
      s = text::normalize(s, NormalForm::NFD);
      strip_marks(s, true);
    }
    if (lower_) LowercaseNormalizer().normalize(s);
  }

 private:
  bool clean_, chinese_, strip_accents_, lower_;
};

// SentencePiece's character map (T5, XLM-R, ALBERT converted to tokenizer.json), applied as
// `tokenizers` does, which is not SentencePiece's own longest-match walk: per extended grapheme
// cluster, a cluster of fewer than 6 bytes that some key is a prefix of becomes the shortest
// such key's replacement (the cluster's other characters dropped); otherwise each character
// is looked up on its own and kept when no key matches it.
class PrecompiledNormalizer : public Normalizer {
 public:
  explicit PrecompiledNormalizer(CharsMap map) : map_(std::move(map)) {}
  void normalize(std::string& s) const override {
    if (map_.empty() || s.empty()) return;
    thread_local std::vector<size_t> ends;
    grapheme_ends(s, ends);
    std::string out;
    out.reserve(s.size() + 8);
    size_t begin = 0;
    for (const size_t end : ends) {
      if (end - begin < 6) {
        if (const auto r = map_.first(s, begin, end)) {
          out += *r;
          begin = end;
          continue;
        }
      }
      for (size_t i = begin; i < end;) {
        const size_t n = std::min(char_len(static_cast<unsigned char>(s[i])), end - i);
        if (const auto r = map_.first(s, i, i + n))
          out += *r;
        else
          out.append(s, i, n);
        i += n;
      }
      begin = end;
    }
    s.swap(out);
  }

 private:
  CharsMap map_;
};

std::unique_ptr<Normalizer> make_precompiled(const nlohmann::json& j, const Where& where) {
  const auto& v = member(j, "precompiled_charsmap", where);
  if (v.is_null()) return nullptr;  // no map: the identity
  if (!v.is_string()) fail(where.at("precompiled_charsmap"), "expected a base64 string");
  const auto blob = base64_decode(v.get<std::string>());
  if (!blob) fail(where.at("precompiled_charsmap"), "not valid base64");
  CharsMap map;
  if (!blob->empty() && !map.parse(*blob))
    fail(where.at("precompiled_charsmap"),
         "not a SentencePiece precompiled character map (its trie size does not fit)");
  return std::make_unique<PrecompiledNormalizer>(std::move(map));
}

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  void normalize(std::string& s) const override {
    for (const auto& p : parts_) p->normalize(s);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const Where& where) {
  if (j.is_null()) return nullptr;
  if (!j.is_object()) fail(where, "expected an object, got " + j.dump());
  const std::string type = get_string(j, "type", where);
  if (type == "NFC") return std::make_unique<FormNormalizer>(NormalForm::NFC);
  if (type == "NFD") return std::make_unique<FormNormalizer>(NormalForm::NFD);
  if (type == "NFKC") return std::make_unique<FormNormalizer>(NormalForm::NFKC);
  if (type == "NFKD") return std::make_unique<FormNormalizer>(NormalForm::NFKD);
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "StripAccents") return std::make_unique<StripAccentsNormalizer>();
  if (type == "Strip")
    return std::make_unique<StripNormalizer>(get_bool(j, "strip_left", where, true),
                                             get_bool(j, "strip_right", where, true));
  if (type == "Replace")
    return std::make_unique<ReplaceNormalizer>(make_pattern(j, where),
                                               get_string(j, "content", where));
  if (type == "Prepend")
    return std::make_unique<PrependNormalizer>(get_string(j, "prepend", where));
  if (type == "BertNormalizer") {
    const bool lower = get_bool(j, "lowercase", where, true);
    bool strip = lower;
    if (j.contains("strip_accents") && !j["strip_accents"].is_null())
      strip = get_bool(j, "strip_accents", where, lower);
    return std::make_unique<BertNormalizer>(get_bool(j, "clean_text", where, true),
                                            get_bool(j, "handle_chinese_chars", where, true), strip,
                                            lower);
  }
  if (type == "Precompiled") return make_precompiled(j, where);
  if (type == "Sequence") {
    const auto& list = member(j, "normalizers", where);
    if (!list.is_array()) fail(where.at("normalizers"), "expected a list");
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (size_t i = 0; i < list.size(); ++i) {
      auto p = make_normalizer(list[i], where.at("normalizers").at(i));
      if (p) parts.push_back(std::move(p));
    }
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  fail_unsupported(where.at("type"), "normalizer", type,
                   {"NFC", "NFD", "NFKC", "NFKD", "Lowercase", "StripAccents", "Strip", "Replace",
                    "Prepend", "BertNormalizer", "Precompiled", "Sequence"});
}

// Shared with the pre-tokenizers' Split.
std::unique_ptr<Regex> make_split_pattern(const nlohmann::json& j, const Where& where) {
  return make_pattern(j, where);
}

}  // namespace sculpt::text::detail
