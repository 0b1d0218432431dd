// tokenizer.json pre-tokenizers: ByteLevel, Split, Whitespace, WhitespaceSplit,
// BertPreTokenizer, Metaspace, Digits, Punctuation, CharDelimiterSplit and Sequence.
// Splitting follows `tokenizers`' SplitDelimiterBehavior on (span, is_match) lists: a regex or
// string pattern gives one span per match; a character class gives one span per character.
#include <algorithm>
#include <array>

#include <nlohmann/json.hpp>

#include "core/text/components.h"
#include "core/text/regex.h"
#include "core/text/unicode.h"

namespace sculpt::text::detail {

std::unique_ptr<Regex> make_split_pattern(const nlohmann::json& j, const Where& where);

namespace {

struct Span {
  size_t start, end;
  bool match;
};
enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

// The (span, is_match) list of a character predicate: each matching character is one match.
template <class Pred>
void char_spans(std::string_view s, Pred pred, std::vector<Span>& spans) {
  spans.clear();
  size_t last = 0, i = 0;
  while (i < s.size()) {
    const size_t b = i;
    const char32_t c = next_char(s, i);
    if (pred(c)) {
      if (last < b) spans.push_back({last, b, false});
      spans.push_back({b, i, true});
      last = i;
    }
  }
  if (last < s.size()) spans.push_back({last, s.size(), false});
}

void regex_spans(const Regex& re, std::string_view s, std::vector<Span>& spans) {
  thread_local std::vector<std::pair<size_t, size_t>> found;
  spans.clear();
  re.find_all(s, found);
  size_t prev = 0;
  for (const auto& [a, b] : found) {
    if (prev != a) spans.push_back({prev, a, false});
    spans.push_back({a, b, true});
    prev = b;
  }
  if (prev != s.size()) spans.push_back({prev, s.size(), false});
}

// Appends the pieces of `p` that `behavior` keeps (non-empty ones) to `out`.
void emit(const Piece& p, std::vector<Span>& spans, Behavior behavior, std::vector<Piece>& out) {
  std::vector<Span> merged;
  const std::vector<Span>* use = &spans;
  switch (behavior) {
    case Behavior::Removed:
    case Behavior::Isolated:
      break;
    case Behavior::MergedWithPrevious: {
      bool prev_match = false;
      for (const auto& s : spans) {
        if (s.match && !prev_match && !merged.empty())
          merged.back().end = s.end;
        else
          merged.push_back({s.start, s.end, false});
        prev_match = s.match;
      }
      use = &merged;
      break;
    }
    case Behavior::MergedWithNext: {
      bool prev_match = false;
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->match && !prev_match && !merged.empty())
          merged.back().start = it->start;
        else
          merged.push_back({it->start, it->end, false});
        prev_match = it->match;
      }
      std::reverse(merged.begin(), merged.end());
      use = &merged;
      break;
    }
    case Behavior::Contiguous: {
      bool prev_match = false;
      for (const auto& s : spans) {
        if (s.match == prev_match && !merged.empty())
          merged.back().end = s.end;
        else
          merged.push_back({s.start, s.end, false});
        prev_match = s.match;
      }
      use = &merged;
      break;
    }
  }
  for (const auto& s : *use) {
    if (behavior == Behavior::Removed && s.match) continue;
    if (s.end <= s.start) continue;
    out.push_back({p.text.substr(s.start, s.end - s.start), -1, p.at_origin && s.start == 0});
  }
}

// Runs `fn(piece, out)` on every non-token piece; tokens and others pass through.
template <class Fn>
void split_each(std::vector<Piece>& pieces, Fn fn) {
  std::vector<Piece> out;
  out.reserve(pieces.size() * 2);
  for (auto& p : pieces) {
    if (p.id >= 0)
      out.push_back(std::move(p));
    else
      fn(p, out);
  }
  pieces.swap(out);
}

Behavior parse_behavior(const nlohmann::json& j, const Where& where, const char* fallback) {
  const std::string b = get_string(j, "behavior", where, std::string(fallback));
  if (b == "Removed") return Behavior::Removed;
  if (b == "Isolated") return Behavior::Isolated;
  if (b == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::MergedWithNext;
  if (b == "Contiguous") return Behavior::Contiguous;
  fail_unsupported(where.at("behavior"), "split behavior", b,
                   {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"});
}

bool is_bert_punctuation(char32_t c) {
  if (c < 0x80)
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
           (c >= 123 && c <= 126);
  return is_punctuation(c);
}

template <class Pred>
class CharSplit : public PreTokenizer {
 public:
  CharSplit(Pred pred, Behavior behavior) : pred_(pred), behavior_(behavior) {}
  void split(std::vector<Piece>& pieces) const override {
    split_each(pieces, [&](const Piece& p, std::vector<Piece>& out) {
      thread_local std::vector<Span> spans;
      char_spans(p.text, pred_, spans);
      emit(p, spans, behavior_, out);
    });
  }

 private:
  Pred pred_;
  Behavior behavior_;
};
template <class Pred>
std::unique_ptr<PreTokenizer> char_split(Pred pred, Behavior behavior) {
  return std::make_unique<CharSplit<Pred>>(pred, behavior);
}

class RegexSplit : public PreTokenizer {
 public:
  RegexSplit(std::unique_ptr<Regex> re, Behavior behavior, bool invert)
      : re_(std::move(re)), behavior_(behavior), invert_(invert) {}
  void split(std::vector<Piece>& pieces) const override {
    split_each(pieces, [&](const Piece& p, std::vector<Piece>& out) {
      thread_local std::vector<Span> spans;
      regex_spans(*re_, p.text, spans);
      if (invert_)
        for (auto& s : spans) s.match = !s.match;
      emit(p, spans, behavior_, out);
    });
  }

 private:
  std::unique_ptr<Regex> re_;
  Behavior behavior_;
  bool invert_;
};

const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct ByteTables {
  std::array<std::string, 256> to_char;
  std::array<int, 324> to_byte;  // mapped code points are < 324
  ByteTables() {
    to_byte.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      const char32_t c = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
      append_utf8(to_char[b], c);
      to_byte[c] = b;
    }
  }
};
const ByteTables& byte_tables() {
  static const ByteTables t;
  return t;
}

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space),
        re_(use_regex ? std::make_unique<Regex>(kGpt2Pattern) : nullptr) {}
  void split(std::vector<Piece>& pieces) const override {
    const auto& table = byte_tables().to_char;
    split_each(pieces, [&](Piece& p, std::vector<Piece>& out) {
      if (add_prefix_space_ && (p.text.empty() || p.text[0] != ' ')) p.text.insert(0, " ");
      const size_t first = out.size();
      if (re_) {
        thread_local std::vector<Span> spans;
        regex_spans(*re_, p.text, spans);
        emit(p, spans, Behavior::Isolated, out);
      } else if (!p.text.empty()) {
        out.push_back(std::move(p));
      }
      for (size_t k = first; k < out.size(); ++k) {
        std::string mapped;
        mapped.reserve(out[k].text.size() * 2);
        for (unsigned char b : out[k].text) mapped += table[b];
        out[k].text.swap(mapped);
      }
    });
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> re_;
};

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  enum class Prepend { Always, First, Never };
  MetaspacePreTokenizer(std::string replacement, Prepend prepend, bool split)
      : rep_(std::move(replacement)), prepend_(prepend), split_(split) {
    size_t i = 0;
    rep_char_ = rep_.empty() ? 0 : next_char(rep_, i);
  }
  void split(std::vector<Piece>& pieces) const override {
    split_each(pieces, [&](Piece& p, std::vector<Piece>& out) {
      std::string t;
      t.reserve(p.text.size() + 8);
      for (char c : p.text) {
        if (c == ' ')
          t += rep_;
        else
          t += c;
      }
      const bool starts = t.compare(0, rep_.size(), rep_) == 0;
      if (!starts && (prepend_ == Prepend::Always || (prepend_ == Prepend::First && p.at_origin)))
        t.insert(0, rep_);
      Piece q{std::move(t), -1, p.at_origin};
      if (!split_) {
        if (!q.text.empty()) out.push_back(std::move(q));
        return;
      }
      thread_local std::vector<Span> spans;
      const char32_t rc = rep_char_;
      char_spans(
          q.text, [rc](char32_t c) { return c == rc; }, spans);
      emit(q, spans, Behavior::MergedWithNext, out);
    });
  }

 private:
  std::string rep_;
  char32_t rep_char_ = 0;
  Prepend prepend_;
  bool split_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  void split(std::vector<Piece>& pieces) const override {
    for (const auto& p : parts_) p->split(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

}  // namespace

const std::string& byte_to_unicode(uint8_t byte) {
  return byte_tables().to_char[byte];
}
int unicode_to_byte(char32_t c) {
  return c < 324 ? byte_tables().to_byte[c] : -1;
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const Where& where) {
  if (j.is_null()) return nullptr;
  if (!j.is_object()) fail(where, "expected an object, got " + j.dump());
  const std::string type = get_string(j, "type", where);
  if (type == "ByteLevel")
    return std::make_unique<ByteLevelPreTokenizer>(get_bool(j, "add_prefix_space", where, true),
                                                   get_bool(j, "use_regex", where, true));
  if (type == "Split")
    return std::make_unique<RegexSplit>(make_split_pattern(j, where),
                                        parse_behavior(j, where, "Isolated"),
                                        get_bool(j, "invert", where, false));
  if (type == "Whitespace") {
    const char* word = R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}])";
    const char* other = R"([^\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}\p{White_Space}])";
    return std::make_unique<RegexSplit>(
        std::make_unique<Regex>(std::string(word) + "+|" + other + "+"), Behavior::Removed, true);
  }
  if (type == "WhitespaceSplit")
    return char_split([](char32_t c) { return is_whitespace(c); }, Behavior::Removed);
  if (type == "BertPreTokenizer") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    parts.push_back(char_split([](char32_t c) { return is_whitespace(c); }, Behavior::Removed));
    parts.push_back(char_split(is_bert_punctuation, Behavior::Isolated));
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  if (type == "Punctuation")
    return char_split(is_bert_punctuation, parse_behavior(j, where, "Isolated"));
  if (type == "Digits") {
    const bool individual = get_bool(j, "individual_digits", where, false);
    return char_split([](char32_t c) { return is_numeric(c); },
                      individual ? Behavior::Isolated : Behavior::Contiguous);
  }
  if (type == "CharDelimiterSplit") {
    const std::string d = get_string(j, "delimiter", where);
    size_t i = 0;
    const char32_t dc = d.empty() ? 0 : next_char(d, i);
    return char_split([dc](char32_t c) { return c == dc; }, Behavior::Removed);
  }
  if (type == "Metaspace") {
    const std::string rep = get_string(j, "replacement", where, std::string("\xE2\x96\x81"));
    auto prepend = MetaspacePreTokenizer::Prepend::Always;
    if (j.contains("prepend_scheme")) {
      const std::string s = get_string(j, "prepend_scheme", where);
      if (s == "always")
        prepend = MetaspacePreTokenizer::Prepend::Always;
      else if (s == "first")
        prepend = MetaspacePreTokenizer::Prepend::First;
      else if (s == "never")
        prepend = MetaspacePreTokenizer::Prepend::Never;
      else
        fail_unsupported(where.at("prepend_scheme"), "prepend_scheme", s,
                         {"always", "first", "never"});
    } else if (!get_bool(j, "add_prefix_space", where, true)) {
      prepend = MetaspacePreTokenizer::Prepend::Never;
    }
    return std::make_unique<MetaspacePreTokenizer>(rep, prepend, get_bool(j, "split", where, true));
  }
  if (type == "Sequence") {
    const auto& list = member(j, "pretokenizers", where);
    if (!list.is_array()) fail(where.at("pretokenizers"), "expected a list");
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (size_t i = 0; i < list.size(); ++i) {
      auto p = make_pre_tokenizer(list[i], where.at("pretokenizers").at(i));
      if (p) parts.push_back(std::move(p));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  fail_unsupported(where.at("type"), "pre-tokenizer", type,
                   {"ByteLevel", "Split", "Whitespace", "WhitespaceSplit", "BertPreTokenizer",
                    "Metaspace", "Digits", "Punctuation", "CharDelimiterSplit", "Sequence"});
}

}  // namespace sculpt::text::detail
