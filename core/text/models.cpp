// tokenizer.json models. BPE: characters (or byte-fallback / unk) merged by rank with a
// priority queue (lowest rank, then leftmost), as `tokenizers` does, with a word -> ids cache.
// WordPiece: greedy longest match first. Unigram: Viterbi over the vocabulary trie (ties keep
// the shorter piece), unknown characters scored min_score - 10 and fused. WordLevel: lookup.
#include <array>
#include <queue>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/text/byte_trie.h"
#include "core/text/components.h"
#include "core/text/unicode.h"
#include "core/text/vocab.h"
#include "core/text/word_cache.h"

namespace sculpt::text::detail {

namespace {

Vocab read_vocab_map(const nlohmann::json& j, const Where& where) {
  if (!j.is_object()) fail(where, "expected a map of token -> id");
  Vocab v;
  const int64_t bound = static_cast<int64_t>(j.size()) + kIdSlack;
  for (auto it = j.begin(); it != j.end(); ++it)
    v.add(it.key(), get_id(it.value(), bound, where.at(it.key()),
                           std::to_string(j.size()) + " entries plus " + std::to_string(kIdSlack)));
  v.finish();
  return v;
}

std::optional<std::string> optional_string(const nlohmann::json& j, const char* key,
                                           const Where& where) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  if (!j[key].is_string()) fail(where.at(key), "expected a string or null, got " + j[key].dump());
  return j[key].get<std::string>();
}

std::string byte_token(unsigned char b) {
  static const char* hex = "0123456789ABCDEF";
  return std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">";
}

// BPE, WordPiece and WordLevel: a token <-> id map and an optional unknown token.
class VocabModel : public Model {
 public:
  std::optional<int32_t> token_to_id(std::string_view t) const override { return vocab_.find(t); }
  std::optional<std::string> id_to_token(int32_t id) const override {
    if (const auto* t = vocab_.token(id)) return *t;
    return std::nullopt;
  }
  int64_t vocab_size() const override { return vocab_.id_bound(); }
  std::optional<int32_t> unk_id() const override { return unk_id_; }

 protected:
  Vocab vocab_;
  std::optional<int32_t> unk_id_;
};

class BpeModel : public VocabModel {
 public:
  BpeModel(const nlohmann::json& j, const Where& where) {
    vocab_ = read_vocab_map(member(j, "vocab", where), where.at("vocab"));
    unk_token_ = optional_string(j, "unk_token", where);
    prefix_ = optional_string(j, "continuing_subword_prefix", where).value_or("");
    suffix_ = optional_string(j, "end_of_word_suffix", where).value_or("");
    fuse_unk_ = get_bool(j, "fuse_unk", where, false);
    byte_fallback_ = get_bool(j, "byte_fallback", where, false);
    ignore_merges_ = get_bool(j, "ignore_merges", where, false);
    if (j.contains("dropout") && !j["dropout"].is_null() &&
        (!j["dropout"].is_number() || j["dropout"].get<double>() != 0))
      fail(where.at("dropout"),
           "BPE dropout is not supported (it makes ids random): expected "
           "null or 0, got " +
               j["dropout"].dump().substr(0, 80));
    if (unk_token_) {
      unk_id_ = vocab_.find(*unk_token_);
    }
    if (byte_fallback_)
      for (int b = 0; b < 256; ++b) {
        const auto id = vocab_.find(byte_token(static_cast<unsigned char>(b)));
        byte_ids_[b] = id ? *id : -1;
      }
    const auto& merges = member(j, "merges", where);
    if (!merges.is_array()) fail(where.at("merges"), "expected a list");
    merges_.reserve(merges.size() * 2);
    for (size_t r = 0; r < merges.size(); ++r) {
      const auto& m = merges[r];
      const Where w = where.at("merges").at(r);
      std::string a, b;
      if (m.is_string()) {
        const auto s = m.get<std::string>();
        const auto sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
          fail(w, "expected \"left right\", got " + m.dump());
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        a = m[0].get<std::string>();
        b = m[1].get<std::string>();
      } else {
        fail(w, "expected \"left right\" or [left, right], got " + m.dump());
      }
      const auto ia = vocab_.find(a), ib = vocab_.find(b);
      if (!ia || !ib) fail(w, "merge part '" + (ia ? b : a) + "' is not in the vocabulary");
      std::string merged = a;
      merged += (!prefix_.empty() && b.compare(0, prefix_.size(), prefix_) == 0)
                    ? b.substr(prefix_.size())
                    : b;
      const auto im = vocab_.find(merged);
      if (!im) fail(w, "merged token '" + merged + "' is not in the vocabulary");
      merges_[key(*ia, *ib)] = {static_cast<int32_t>(r), *im};
    }
  }

  void tokenize(std::string_view word, std::vector<int32_t>& out) const override {
    if (word.empty()) return;
    if (ignore_merges_)
      if (const auto id = vocab_.find(word)) {
        out.push_back(*id);
        return;
      }
    const bool cacheable = word.size() < 256;
    if (cacheable && cache_.get(word, out)) return;
    const size_t first = out.size();
    merge_word(word, out);
    if (cacheable) cache_.put(word, out.data() + first, out.size() - first);
  }

 private:
  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    bool alive;
  };
  struct Candidate {
    int32_t rank, pos, new_id;
    bool operator<(const Candidate& o) const {  // priority_queue pops the largest: invert
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };

  void merge_word(std::string_view w, std::vector<int32_t>& out) const {
    thread_local std::vector<Symbol> sym;
    thread_local std::string buf;
    sym.clear();
    auto add = [](int32_t id) {
      const auto n = static_cast<int32_t>(sym.size());
      sym.push_back({id, n - 1, n + 1, true});
    };
    int32_t pending_unk = -1;
    size_t i = 0;
    while (i < w.size()) {
      const size_t start = i;
      i += char_len(static_cast<unsigned char>(w[i]));
      std::string_view s = w.substr(start, i - start);
      const bool decorated = (start > 0 && !prefix_.empty()) || (i >= w.size() && !suffix_.empty());
      if (decorated) {
        buf.clear();
        if (start > 0) buf += prefix_;
        buf.append(s);
        if (i >= w.size()) buf += suffix_;
        s = buf;
      }
      if (const auto id = vocab_.find(s)) {
        if (pending_unk >= 0) add(pending_unk), pending_unk = -1;
        add(*id);
        continue;
      }
      if (byte_fallback_) {
        bool all = true;
        for (unsigned char b : s) all = all && byte_ids_[b] >= 0;
        if (all) {
          for (unsigned char b : s) add(byte_ids_[b]);
          continue;
        }
      }
      if (unk_id_) {
        if (pending_unk >= 0 && !fuse_unk_) add(pending_unk);
        pending_unk = *unk_id_;
      }
    }
    if (pending_unk >= 0) add(pending_unk);
    if (!sym.empty()) sym.back().next = -1;

    thread_local std::vector<Candidate> heap_storage;
    heap_storage.clear();
    std::priority_queue<Candidate> queue(std::less<Candidate>(), std::move(heap_storage));
    auto lookup = [this](int32_t a, int32_t b) -> const std::pair<int32_t, int32_t>* {
      const auto it = merges_.find(key(a, b));
      return it == merges_.end() ? nullptr : &it->second;
    };
    for (size_t k = 0; k + 1 < sym.size(); ++k)
      if (const auto* m = lookup(sym[k].id, sym[k + 1].id))
        queue.push({m->first, static_cast<int32_t>(k), m->second});
    while (!queue.empty()) {
      const Candidate top = queue.top();
      queue.pop();
      Symbol& cur = sym[static_cast<size_t>(top.pos)];
      if (!cur.alive || cur.next < 0) continue;
      const int32_t next_pos = cur.next;
      const Symbol right = sym[static_cast<size_t>(next_pos)];
      const auto* m = lookup(cur.id, right.id);
      if (!m || m->second != top.new_id) continue;  // a stale candidate
      cur.id = top.new_id;
      cur.next = right.next;
      sym[static_cast<size_t>(next_pos)].alive = false;
      if (right.next >= 0) sym[static_cast<size_t>(right.next)].prev = top.pos;
      if (cur.prev >= 0)
        if (const auto* pm = lookup(sym[static_cast<size_t>(cur.prev)].id, cur.id))
          queue.push({pm->first, cur.prev, pm->second});
      if (cur.next >= 0)
        if (const auto* nm = lookup(cur.id, sym[static_cast<size_t>(cur.next)].id))
          queue.push({nm->first, top.pos, nm->second});
    }
    for (const auto& s : sym)
      if (s.alive) out.push_back(s.id);
  }

  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // pair -> (rank, new id)
  std::optional<std::string> unk_token_;
  std::string prefix_, suffix_;
  bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
  std::array<int32_t, 256> byte_ids_{};
  WordCache cache_;
};

class WordPieceModel : public VocabModel {
 public:
  WordPieceModel(const nlohmann::json& j, const Where& where) {
    vocab_ = read_vocab_map(member(j, "vocab", where), where.at("vocab"));
    const std::string unk = get_string(j, "unk_token", where, std::string("[UNK]"));
    unk_id_ = vocab_.find(unk);
    if (!unk_id_) fail(where.at("unk_token"), "'" + unk + "' is not in the vocabulary");
    prefix_ = get_string(j, "continuing_subword_prefix", where, std::string("##"));
    if (j.contains("max_input_chars_per_word") && j["max_input_chars_per_word"].is_number_integer())
      max_chars_ = j["max_input_chars_per_word"].get<int64_t>();
    for (int32_t id = 0; id < vocab_.id_bound(); ++id)
      if (const auto* t = vocab_.token(id)) longest_ = std::max(longest_, t->size());
  }
  void tokenize(std::string_view word, std::vector<int32_t>& out) const override {
    int64_t chars = 0;
    for (unsigned char c : word) chars += (c & 0xC0) != 0x80;
    if (chars > max_chars_) {
      out.push_back(*unk_id_);
      return;
    }
    thread_local std::string buf;
    const size_t first = out.size();
    size_t start = 0;
    while (start < word.size()) {
      // No token is longer than the longest in the vocabulary (a long word costs
      // O(length x longest), whatever max_input_chars_per_word allows).
      size_t end = std::min(word.size(), start + longest_);
      while (end > start && end < word.size() &&
             (static_cast<unsigned char>(word[end]) & 0xC0) == 0x80)
        --end;
      std::optional<int32_t> found;
      while (start < end) {
        std::string_view sub = word.substr(start, end - start);
        if (start > 0) {
          buf.assign(prefix_);
          buf.append(sub);
          sub = buf;
        }
        if ((found = vocab_.find(sub))) break;
        --end;
        while (end > start && (static_cast<unsigned char>(word[end]) & 0xC0) == 0x80) --end;
      }
      if (!found) {
        out.resize(first);
        out.push_back(*unk_id_);
        return;
      }
      out.push_back(*found);
      start = end;
    }
  }

 private:
  std::string prefix_;
  int64_t max_chars_ = 100;
  size_t longest_ = 0;  // bytes of the longest token
};

class WordLevelModel : public VocabModel {
 public:
  WordLevelModel(const nlohmann::json& j, const Where& where) : file_(where.file) {
    vocab_ = read_vocab_map(member(j, "vocab", where), where.at("vocab"));
    if (const auto unk = optional_string(j, "unk_token", where)) unk_id_ = vocab_.find(*unk);
  }
  void tokenize(std::string_view word, std::vector<int32_t>& out) const override {
    if (const auto id = vocab_.find(word))
      out.push_back(*id);
    else if (unk_id_)
      out.push_back(*unk_id_);
    else
      throw UserError("'" + std::string(word.substr(0, 80)) + "' is not in the vocabulary of " +
                      file_ + " (a WordLevel model without unk_token)");
  }

 private:
  std::string file_;
};

class UnigramModel : public Model {
 public:
  UnigramModel(const nlohmann::json& j, const Where& where) : file_(where.file) {
    const auto& list = member(j, "vocab", where);
    if (!list.is_array()) fail(where.at("vocab"), "expected a list of [piece, score]");
    scores_.reserve(list.size());
    for (size_t i = 0; i < list.size(); ++i) {
      const auto& e = list[i];
      if (!e.is_array() || e.size() != 2 || !e[0].is_string() || !e[1].is_number())
        fail(where.at("vocab").at(i), "expected [piece, score], got " + e.dump());
      const auto piece = e[0].get<std::string>();
      const double score = e[1].get<double>();
      vocab_.add(piece, static_cast<int32_t>(i));
      scores_.push_back(score);
      min_score_ = std::min(min_score_, score);
    }
    vocab_.finish();
    // The trie's ids follow the token -> id map (the last id of a repeated piece).
    for (size_t i = 0; i < list.size(); ++i) {
      const auto piece = list[i][0].get<std::string>();
      trie_.add(piece, *vocab_.find(piece));
    }
    trie_.finish();
    if (j.contains("unk_id") && j["unk_id"].is_number_integer())
      unk_id_ = get_id(j["unk_id"], static_cast<int64_t>(list.size()), where.at("unk_id"),
                       "the vocabulary's entries");
    byte_fallback_ = get_bool(j, "byte_fallback", where, false);
    if (byte_fallback_)
      for (int b = 0; b < 256; ++b) {
        const auto id = vocab_.find(byte_token(static_cast<unsigned char>(b)));
        byte_ids_[b] = id ? *id : -1;
      }
  }

  void tokenize(std::string_view s, std::vector<int32_t>& out) const override {
    if (s.empty()) return;
    struct Best {
      double score;
      int32_t start;  // -1: unreached
      int32_t id;
    };
    thread_local std::vector<Best> best;
    best.assign(s.size() + 1, {0.0, -1, -1});
    const double unk_score = min_score_ - 10.0;
    size_t pos = 0;
    while (pos < s.size()) {
      const double here = best[pos].score;
      const size_t mblen = std::min(char_len(static_cast<unsigned char>(s[pos])), s.size() - pos);
      bool single = false;
      trie_.prefixes(s, pos, [&](size_t end, int32_t id) {
        const double cand = here + scores_[static_cast<size_t>(id)];
        auto& t = best[end];
        if (t.start < 0 || cand > t.score) t = {cand, static_cast<int32_t>(pos), id};
        if (end - pos == mblen) single = true;
      });
      if (!single) {
        if (!unk_id_)
          throw UserError("'" + std::string(s.substr(pos, mblen)) +
                          "' is not in the vocabulary of " + file_ +
                          " (a Unigram model without unk_id)");
        auto& t = best[pos + mblen];
        const double cand = here + unk_score;
        if (t.start < 0 || cand > t.score) t = {cand, static_cast<int32_t>(pos), *unk_id_};
      }
      pos += mblen;
    }
    // Walk back; consecutive unknowns fuse into one piece.
    thread_local std::vector<std::pair<size_t, size_t>> spans;  // pieces, reversed
    thread_local std::vector<bool> unknown;
    spans.clear();
    unknown.clear();
    size_t end = s.size();
    while (end > 0) {
      const auto& b = best[end];
      const auto start = static_cast<size_t>(b.start);
      const bool unk = unk_id_ && b.id == *unk_id_;
      if (unk && !unknown.empty() && unknown.back())
        spans.back().first = start;
      else {
        spans.emplace_back(start, end);
        unknown.push_back(unk);
      }
      end = start;
    }
    for (size_t k = spans.size(); k-- > 0;) {
      const auto [a, b] = spans[k];
      const std::string_view piece = s.substr(a, b - a);
      if (const auto id = vocab_.find(piece)) {
        out.push_back(*id);
        continue;
      }
      if (byte_fallback_) {
        bool all = true;
        for (unsigned char c : piece) all = all && byte_ids_[c] >= 0;
        if (all) {
          for (unsigned char c : piece) out.push_back(byte_ids_[c]);
          continue;
        }
      }
      out.push_back(*unk_id_);
    }
  }
  std::optional<int32_t> token_to_id(std::string_view t) const override { return vocab_.find(t); }
  std::optional<std::string> id_to_token(int32_t id) const override {
    if (const auto* t = vocab_.token(id)) return *t;
    return std::nullopt;
  }
  int64_t vocab_size() const override { return vocab_.id_bound(); }
  std::optional<int32_t> unk_id() const override { return unk_id_; }

 private:
  std::string file_;
  Vocab vocab_;
  std::vector<double> scores_;
  double min_score_ = 0.0;
  std::optional<int32_t> unk_id_;
  bool byte_fallback_ = false;
  std::array<int32_t, 256> byte_ids_{};
  ByteTrie trie_;
};

}  // namespace

std::unique_ptr<Model> make_model(const nlohmann::json& j, const Where& where) {
  if (!j.is_object()) fail(where, "expected an object, got " + j.dump().substr(0, 80));
  std::string type;
  if (j.contains("type"))
    type = get_string(j, "type", where);
  else if (j.contains("merges"))
    type = "BPE";  // older files omit the type
  else if (j.contains("vocab") && j["vocab"].is_array())
    type = "Unigram";
  else if (j.contains("continuing_subword_prefix"))
    type = "WordPiece";
  else
    type = "WordLevel";
  if (type == "BPE") return std::make_unique<BpeModel>(j, where);
  if (type == "WordPiece") return std::make_unique<WordPieceModel>(j, where);
  if (type == "Unigram") return std::make_unique<UnigramModel>(j, where);
  if (type == "WordLevel") return std::make_unique<WordLevelModel>(j, where);
  fail_unsupported(where.at("type"), "model type", type,
                   {"BPE", "WordPiece", "Unigram", "WordLevel"});
}

}  // namespace sculpt::text::detail
