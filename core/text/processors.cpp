// tokenizer.json post-processors (TemplateProcessing, BertProcessing, RobertaProcessing,
// ByteLevel, Sequence) and decoders (ByteLevel, WordPiece, Metaspace, BPEDecoder,
// ByteFallback, Fuse, Strip, Replace, Sequence), as `tokenizers` applies them.
#include <nlohmann/json.hpp>

#include "core/text/components.h"
#include "core/text/regex.h"
#include "core/text/unicode.h"

namespace sculpt::text::detail {

std::unique_ptr<Regex> make_split_pattern(const nlohmann::json& j, const Where& where);

Encoding concat_plain(Encoding a, const Encoding* b) {
  a.type_ids.assign(a.ids.size(), 0);
  if (b) {
    a.ids.insert(a.ids.end(), b->ids.begin(), b->ids.end());
    a.type_ids.insert(a.type_ids.end(), b->ids.size(), 1);
  }
  a.attention_mask.assign(a.ids.size(), 1);
  return a;
}

namespace {

class NoOpProcessor : public PostProcessor {
 public:
  size_t added_tokens(bool) const override { return 0; }
  Encoding process(Encoding a, const Encoding* b, bool) const override {
    return concat_plain(std::move(a), b);
  }
};

// One item of a template: a special token's ids, or sequence A (0) / B (1), with a type id.
struct TemplateItem {
  std::vector<int32_t> ids;  // special token ids; empty for a sequence
  int sequence = -1;         // 0: A, 1: B, -1: special
  int32_t type_id = 0;
};

class TemplateProcessor : public PostProcessor {
 public:
  TemplateProcessor(std::vector<TemplateItem> single, std::vector<TemplateItem> pair)
      : single_(std::move(single)), pair_(std::move(pair)) {}
  size_t added_tokens(bool pair) const override {
    size_t n = 0;
    for (const auto& it : pair ? pair_ : single_) n += it.ids.size();
    return n;
  }
  Encoding process(Encoding a, const Encoding* b, bool add_special) const override {
    if (!add_special) return concat_plain(std::move(a), b);
    Encoding out;
    out.ids.reserve(a.ids.size() + (b ? b->ids.size() : 0) + 4);
    for (const auto& it : b ? pair_ : single_) {
      const std::vector<int32_t>& src =
          it.sequence < 0 ? it.ids : (it.sequence == 0 ? a.ids : b->ids);
      out.ids.insert(out.ids.end(), src.begin(), src.end());
      out.type_ids.insert(out.type_ids.end(), src.size(), it.type_id);
    }
    out.attention_mask.assign(out.ids.size(), 1);
    return out;
  }
  std::vector<int32_t> special_ids() const override {
    std::vector<int32_t> ids;
    for (const auto* items : {&single_, &pair_})
      for (const auto& it : *items) ids.insert(ids.end(), it.ids.begin(), it.ids.end());
    return ids;
  }

 private:
  std::vector<TemplateItem> single_, pair_;
};

// A template item's type_id: a small integer (the data files store one byte per id).
int32_t type_id(const nlohmann::json& s, const Where& where) {
  if (!s.is_object() || !s.contains("type_id")) return 0;
  return get_id(s["type_id"], 256, where.at("type_id"), "token type ids are bytes");
}

std::vector<TemplateItem> parse_template(const nlohmann::json& j, const nlohmann::json& specials,
                                         const Where& where, const Where& specials_where) {
  if (!j.is_array()) fail(where, "expected a list of template items");
  std::vector<TemplateItem> items;
  for (size_t i = 0; i < j.size(); ++i) {
    const Where w = where.at(i);
    const auto& e = j[i];
    TemplateItem item;
    if (e.is_object() && e.contains("SpecialToken")) {
      const auto& s = e["SpecialToken"];
      const std::string name = get_string(s, "id", w.at("SpecialToken"));
      item.type_id = type_id(s, w.at("SpecialToken"));
      if (!specials.is_object() || !specials.contains(name))
        fail(w, "special token '" + name + "' is not in special_tokens");
      const Where ws = specials_where.at(name);
      const auto& ids = member(specials[name], "ids", ws);
      if (!ids.is_array() || ids.size() > 64) fail(ws.at("ids"), "expected a list of up to 64 ids");
      for (size_t k = 0; k < ids.size(); ++k)
        item.ids.push_back(get_id(ids[k], INT32_MAX, ws.at("ids").at(k), "an int32"));
    } else if (e.is_object() && e.contains("Sequence")) {
      const auto& s = e["Sequence"];
      const std::string name = get_string(s, "id", w.at("Sequence"));
      item.type_id = type_id(s, w.at("Sequence"));
      if (name != "A" && name != "B") fail(w.at("Sequence.id"), "expected A or B, got " + name);
      item.sequence = name == "A" ? 0 : 1;
    } else {
      fail(w, "expected {\"SpecialToken\": ...} or {\"Sequence\": ...}, got " + e.dump());
    }
    items.push_back(std::move(item));
  }
  return items;
}

int32_t pair_id(const nlohmann::json& j, const char* key, const Where& where) {
  const auto& p = member(j, key, where);
  if (!p.is_array() || p.size() != 2 || !p[1].is_number_integer())
    fail(where.at(key), "expected [token, id], got " + p.dump());
  return get_id(p[1], INT32_MAX, where.at(key).at(1), "an int32");
}

// ---- decoders ----

class ByteLevelDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const auto& t : tokens) {
      const size_t mark = bytes.size();
      bool ok = true;
      size_t i = 0;
      while (i < t.size()) {
        const int b = unicode_to_byte(next_char(t, i));
        if (b < 0) {
          ok = false;
          break;
        }
        bytes += static_cast<char>(b);
      }
      if (!ok) {
        bytes.resize(mark);
        bytes += t;
      }
    }
    tokens.assign(1, utf8_lossy(bytes));
  }
};

class WordPieceDecoder : public Decoder {
 public:
  WordPieceDecoder(std::string prefix, bool cleanup)
      : prefix_(std::move(prefix)), cleanup_(cleanup) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      auto& t = tokens[i];
      if (i != 0) {
        if (t.compare(0, prefix_.size(), prefix_) == 0)
          t.erase(0, prefix_.size());
        else
          t.insert(0, " ");
      }
      if (cleanup_) t = cleanup(t);
    }
  }
  static std::string cleanup(std::string s) {
    static const std::pair<const char*, const char*> kRules[] = {
        {" .", "."},   {" ?", "?"},     {" !", "!"},    {" ,", ","},
        {" ' ", "'"},  {" n't", "n't"}, {" 'm", "'m"},  {" do not", " don't"},
        {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    for (const auto& [from, to] : kRules) {
      const std::string f(from), t(to);
      std::string out;
      size_t prev = 0, pos;
      while ((pos = s.find(f, prev)) != std::string::npos) {
        out.append(s, prev, pos - prev);
        out += t;
        prev = pos + f.size();
      }
      out.append(s, prev, std::string::npos);
      s.swap(out);
    }
    return s;
  }

 private:
  std::string prefix_;
  bool cleanup_;
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string rep, bool strip_first)
      : rep_(std::move(rep)), strip_first_(strip_first) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const auto& t = tokens[i];
      size_t pos = 0, prev = 0;
      while (!rep_.empty() && (pos = t.find(rep_, prev)) != std::string::npos) {
        out.append(t, prev, pos - prev);
        if (!(i == 0 && strip_first_)) out += ' ';
        prev = pos + rep_.size();
      }
      out.append(t, prev, std::string::npos);
      tokens[i].swap(out);
    }
  }

 private:
  std::string rep_;
  bool strip_first_;
};

class BpeDecoder : public Decoder {
 public:
  explicit BpeDecoder(std::string suffix) : suffix_(std::move(suffix)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      const std::string to = i + 1 == tokens.size() ? "" : " ";
      std::string out;
      const auto& t = tokens[i];
      size_t pos = 0, prev = 0;
      while (!suffix_.empty() && (pos = t.find(suffix_, prev)) != std::string::npos) {
        out.append(t, prev, pos - prev);
        out += to;
        prev = pos + suffix_.size();
      }
      out.append(t, prev, std::string::npos);
      tokens[i].swap(out);
    }
  }

 private:
  std::string suffix_;
};

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

class ByteFallbackDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (find_invalid_utf8(pending) == std::string::npos)
        out.push_back(pending);
      else
        for (size_t k = 0; k < pending.size(); ++k) out.emplace_back("\xEF\xBF\xBD");
      pending.clear();
    };
    for (auto& t : tokens) {
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && hex_digit(t[3]) >= 0 &&
          hex_digit(t[4]) >= 0) {
        pending += static_cast<char>(hex_digit(t[3]) * 16 + hex_digit(t[4]));
        continue;
      }
      flush();
      out.push_back(std::move(t));
    }
    flush();
    tokens.swap(out);
  }
};

class FuseDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, all);
  }
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop)
      : c_(content), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      std::vector<std::pair<size_t, char32_t>> chars;  // byte offset, char
      size_t i = 0;
      while (i < t.size()) {
        const size_t b = i;
        chars.emplace_back(b, next_char(t, i));
      }
      size_t cut_start = 0, cut_stop = chars.size();
      for (size_t k = 0; k < std::min(start_, chars.size()) && chars[k].second == c_; ++k)
        cut_start = k + 1;
      for (size_t k = 0;
           k < std::min(stop_, chars.size()) && chars[chars.size() - 1 - k].second == c_; ++k)
        cut_stop = chars.size() - 1 - k;
      if (cut_start >= cut_stop) {
        t.clear();
        continue;
      }
      const size_t from = chars[cut_start].first;
      const size_t to = cut_stop < chars.size() ? chars[cut_stop].first : t.size();
      t = t.substr(from, to - from);
    }
  }

 private:
  char32_t c_;
  size_t start_, stop_;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(std::unique_ptr<Regex> re, std::string content)
      : re_(std::move(re)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::pair<size_t, size_t>> m;
    for (auto& t : tokens) {
      re_->find_all(t, m);
      if (m.empty()) continue;
      std::string out;
      size_t prev = 0;
      for (const auto& [a, b] : m) {
        out.append(t, prev, a - prev);
        out += content_;
        prev = b;
      }
      out.append(t, prev, std::string::npos);
      t.swap(out);
    }
  }

 private:
  std::unique_ptr<Regex> re_;
  std::string content_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts)
      : parts_(std::move(parts)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& p : parts_) p->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

}  // namespace

std::unique_ptr<PostProcessor> make_post_processor(const nlohmann::json& j, const Where& where) {
  if (j.is_null()) return nullptr;
  if (!j.is_object()) fail(where, "expected an object, got " + j.dump());
  const std::string type = get_string(j, "type", where);
  if (type == "ByteLevel") return std::make_unique<NoOpProcessor>();
  if (type == "TemplateProcessing") {
    const auto& specials = j.contains("special_tokens") ? j["special_tokens"] : nlohmann::json();
    return std::make_unique<TemplateProcessor>(
        parse_template(member(j, "single", where), specials, where.at("single"),
                       where.at("special_tokens")),
        parse_template(member(j, "pair", where), specials, where.at("pair"),
                       where.at("special_tokens")));
  }
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    const int32_t cls = pair_id(j, "cls", where), sep = pair_id(j, "sep", where);
    const bool roberta = type == "RobertaProcessing";
    std::vector<TemplateItem> single = {{{cls}, -1, 0}, {{}, 0, 0}, {{sep}, -1, 0}};
    std::vector<TemplateItem> pair = single;
    if (roberta) pair.push_back({{sep}, -1, 0});
    pair.push_back({{}, 1, roberta ? 0 : 1});
    pair.push_back({{sep}, -1, roberta ? 0 : 1});
    return std::make_unique<TemplateProcessor>(std::move(single), std::move(pair));
  }
  if (type == "Sequence") {
    const auto& list = member(j, "processors", where);
    if (!list.is_array()) fail(where.at("processors"), "expected a list");
    std::unique_ptr<PostProcessor> chosen;
    for (size_t i = 0; i < list.size(); ++i) {
      const Where w = where.at("processors").at(i);
      if (list[i].is_object() && list[i].value("type", "") == "ByteLevel") continue;
      if (chosen)
        fail(w, "a Sequence post-processor with more than one adding processor is not supported");
      chosen = make_post_processor(list[i], w);
    }
    return chosen ? std::move(chosen) : std::make_unique<NoOpProcessor>();
  }
  fail_unsupported(
      where.at("type"), "post-processor", type,
      {"TemplateProcessing", "BertProcessing", "RobertaProcessing", "ByteLevel", "Sequence"});
}

std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j, const Where& where) {
  if (j.is_null()) return nullptr;
  if (!j.is_object()) fail(where, "expected an object, got " + j.dump());
  const std::string type = get_string(j, "type", where);
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "WordPiece")
    return std::make_unique<WordPieceDecoder>(get_string(j, "prefix", where, std::string("##")),
                                              get_bool(j, "cleanup", where, true));
  if (type == "Metaspace") {
    bool strip_first = true;
    if (j.contains("prepend_scheme"))
      strip_first = get_string(j, "prepend_scheme", where) != "never";
    else
      strip_first = get_bool(j, "add_prefix_space", where, true);
    return std::make_unique<MetaspaceDecoder>(
        get_string(j, "replacement", where, std::string("\xE2\x96\x81")), strip_first);
  }
  if (type == "BPEDecoder")
    return std::make_unique<BpeDecoder>(get_string(j, "suffix", where, std::string("</w>")));
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    const std::string c = get_string(j, "content", where);
    size_t i = 0;
    const char32_t ch = c.empty() ? 0 : next_char(c, i);
    auto count = [&](const char* key) -> size_t {
      if (!j.contains(key) || j[key].is_null()) return 0;
      return static_cast<size_t>(get_id(j[key], INT32_MAX, where.at(key), "a count"));
    };
    return std::make_unique<StripDecoder>(ch, count("start"), count("stop"));
  }
  if (type == "Replace")
    return std::make_unique<ReplaceDecoder>(make_split_pattern(j, where),
                                            get_string(j, "content", where));
  if (type == "Sequence") {
    const auto& list = member(j, "decoders", where);
    if (!list.is_array()) fail(where.at("decoders"), "expected a list");
    std::vector<std::unique_ptr<Decoder>> parts;
    for (size_t i = 0; i < list.size(); ++i) {
      auto d = make_decoder(list[i], where.at("decoders").at(i));
      if (d) parts.push_back(std::move(d));
    }
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  fail_unsupported(where.at("type"), "decoder", type,
                   {"ByteLevel", "WordPiece", "Metaspace", "BPEDecoder", "ByteFallback", "Fuse",
                    "Strip", "Replace", "Sequence"});
}

}  // namespace sculpt::text::detail
