#include "core/text/sp_model.h"

#include <algorithm>
#include <cstring>
#include <queue>

#include "core/text/unicode.h"

namespace sculpt::text::detail {

namespace {

// Protocol buffer wire format, enough for ModelProto.
struct Wire {
  const uint8_t* p;
  const uint8_t* end;
  bool ok = true;
  bool done() const { return !ok || p >= end; }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64 && p < end; shift += 7) {
      const uint8_t b = *p++;
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    ok = false;
    return 0;
  }
  std::string_view bytes() {
    const uint64_t n = varint();
    if (!ok || n > static_cast<uint64_t>(end - p)) {
      ok = false;
      return {};
    }
    std::string_view s(reinterpret_cast<const char*>(p), n);
    p += n;
    return s;
  }
  uint32_t fixed32() {
    if (end - p < 4) {
      ok = false;
      return 0;
    }
    uint32_t v;
    std::memcpy(&v, p, 4);
    p += 4;
    return v;
  }
  void skip(uint32_t wire) {
    switch (wire) {
      case 0:
        varint();
        break;
      case 1:
        p += 8;
        break;
      case 2:
        bytes();
        break;
      case 5:
        p += 4;
        break;
      default:
        ok = false;
    }
    if (p > end) ok = false;
  }
  bool next(uint32_t& field, uint32_t& wire) {
    if (done()) return false;
    const uint64_t key = varint();
    field = static_cast<uint32_t>(key >> 3);
    wire = static_cast<uint32_t>(key & 7);
    return ok;
  }
};
Wire wire_of(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()),
          reinterpret_cast<const uint8_t*>(s.data()) + s.size()};
}

constexpr std::string_view kSpace = "\xE2\x96\x81";

// The byte of a BYTE piece "<0xHH>", or -1 when the text is not that.
int byte_of_piece(std::string_view t) {
  auto hex = [](char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                  : -1;
  };
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>' || hex(t[3]) < 0 || hex(t[4]) < 0)
    return -1;
  return hex(t[3]) * 16 + hex(t[4]);
}
constexpr float kUnkPenalty = 10.0f;

}  // namespace

std::unique_ptr<SpEncoder> SpEncoder::from_proto(std::string_view serialized, std::string* why) {
  auto bad = [why](const std::string& reason) -> std::unique_ptr<SpEncoder> {
    *why = reason;
    return nullptr;
  };
  auto e = std::unique_ptr<SpEncoder>(new SpEncoder());
  int model_type = 1;
  bool suffix = false;
  Wire w = wire_of(serialized);
  const auto* base = reinterpret_cast<const uint8_t*>(serialized.data());
  // "at byte N": where the message that does not parse starts in the file.
  auto at = [&](const uint8_t* p) { return " at byte " + std::to_string(p - base); };
  uint32_t field, wire;
  while (w.next(field, wire)) {
    const uint8_t* start = w.p;
    if (field == 1 && wire == 2) {  // pieces
      Wire pw = wire_of(w.bytes());
      Piece piece;
      uint32_t f, t;
      while (pw.next(f, t)) {
        if (f == 1 && t == 2)
          piece.text = std::string(pw.bytes());
        else if (f == 2 && t == 5) {
          const uint32_t bits = pw.fixed32();
          std::memcpy(&piece.score, &bits, 4);
        } else if (f == 3 && t == 0)
          piece.type = static_cast<int>(pw.varint());
        else
          pw.skip(t);
      }
      if (!pw.ok)
        return bad("not a SentencePiece model (piece " + std::to_string(e->pieces_.size()) +
                   " does not parse" + at(start) + ")");
      e->pieces_.push_back(std::move(piece));
    } else if (field == 2 && wire == 2) {  // trainer_spec
      Wire tw = wire_of(w.bytes());
      uint32_t f, t;
      while (tw.next(f, t)) {
        if (f == 3 && t == 0)
          model_type = static_cast<int>(tw.varint());
        else if (f == 24 && t == 0)
          suffix = tw.varint() != 0;
        else
          tw.skip(t);
      }
      if (!tw.ok)
        return bad("not a SentencePiece model (trainer_spec does not parse" + at(start) + ")");
    } else if (field == 3 && wire == 2) {  // normalizer_spec
      Wire nw = wire_of(w.bytes());
      uint32_t f, t;
      while (nw.next(f, t)) {
        if (f == 2 && t == 2) {
          const std::string_view blob = nw.bytes();
          if (!blob.empty() && !e->charsmap_.parse(blob))
            return bad(
                "not a SentencePiece model (normalizer_spec.precompiled_charsmap: its "
                "trie size does not fit)");
        } else if (f == 3 && t == 0)
          e->add_dummy_prefix_ = nw.varint() != 0;
        else if (f == 4 && t == 0)
          e->remove_extra_whitespaces_ = nw.varint() != 0;
        else if (f == 5 && t == 0)
          e->escape_whitespaces_ = nw.varint() != 0;
        else
          nw.skip(t);
      }
      if (!nw.ok)
        return bad("not a SentencePiece model (normalizer_spec does not parse" + at(start) + ")");
    } else {
      w.skip(wire);
    }
  }
  if (!w.ok)
    return bad("not a SentencePiece model (the protobuf does not parse" + at(std::min(w.p, w.end)) +
               " of " + std::to_string(serialized.size()) + ")");
  if (e->pieces_.empty()) return bad("not a SentencePiece model (no pieces)");
  if (suffix) return bad("unsupported SentencePiece model: treat_whitespace_as_suffix");
  if (model_type != 1 && model_type != 2)
    return bad("unsupported SentencePiece model type " + std::to_string(model_type) +
               " (supported: 1 unigram, 2 bpe)");
  e->type_ = model_type == 1 ? Type::Unigram : Type::Bpe;
  e->min_score_ = 3.4e38f;
  e->max_score_ = -3.4e38f;
  bool has_unk = false;
  for (int b = 0; b < 256; ++b) e->byte_ids_[b] = -1;
  for (size_t i = 0; i < e->pieces_.size(); ++i) {
    const auto& p = e->pieces_[i];
    const auto id = static_cast<int32_t>(i);
    if (p.type == 4)
      return bad("unsupported SentencePiece model: user-defined piece " + std::to_string(i) +
                 " (supported: normal, unknown, control, byte and unused pieces)");
    if (p.type < 1 || p.type > 6)
      return bad("not a SentencePiece model (piece " + std::to_string(i) + " has type " +
                 std::to_string(p.type) + ")");
    if (p.type == 1 || p.type == 5)
      e->normal_[p.text] = id;
    else
      e->reserved_[p.text] = id;
    if (p.type == 1) {
      e->min_score_ = std::min(e->min_score_, p.score);
      e->max_score_ = std::max(e->max_score_, p.score);
    }
    if (p.type == 2) e->unk_ = id, has_unk = true;
    if (p.type == 6) {
      const int b = byte_of_piece(p.text);
      if (b < 0)
        return bad("not a SentencePiece model (byte piece " + std::to_string(i) +
                   " is not <0xHH>)");
      e->byte_fallback_ = true;
      e->byte_ids_[b] = id;
    }
  }
  if (!has_unk) return bad("not a SentencePiece model (no unknown piece)");
  e->segment_bpe_ = e->type_ == Type::Bpe && e->escape_whitespaces_;
  for (const auto& p : e->pieces_)
    if (p.text.find(kSpace, 1) != std::string::npos) e->segment_bpe_ = false;
  if (e->type_ == Type::Unigram) {
    for (const auto& [text, id] : e->normal_) e->trie_.add(text, id);
    e->trie_.finish();
  }
  return e;
}

void SpEncoder::normalize(std::string_view in, std::string& out) const {
  out.clear();
  size_t pos = 0;
  // The rule (or the character itself) at pos: (consumed, replacement).
  auto next = [&](size_t at) -> std::pair<size_t, std::string_view> {
    auto m = charsmap_.longest(in, at);
    if (m.first) return m;
    const size_t n = std::min(char_len(static_cast<unsigned char>(in[at])), in.size() - at);
    return {n, in.substr(at, n)};
  };
  if (remove_extra_whitespaces_)
    while (pos < in.size()) {
      const auto m = next(pos);
      if (m.second != " ") break;
      pos += m.first;
    }
  if (pos >= in.size()) return;
  auto add_space = [&] { out += escape_whitespaces_ ? kSpace : std::string_view(" "); };
  if (add_dummy_prefix_) add_space();
  bool prev_space = remove_extra_whitespaces_;
  while (pos < in.size()) {
    const auto m = next(pos);
    std::string_view sp = m.second;
    while (prev_space && !sp.empty() && sp.front() == ' ') sp.remove_prefix(1);
    if (!sp.empty()) {
      for (char c : sp) {
        if (escape_whitespaces_ && c == ' ')
          out += kSpace;
        else
          out += c;
      }
      prev_space = sp.back() == ' ';
    }
    pos += m.first;
    if (!remove_extra_whitespaces_) prev_space = false;
  }
  if (remove_extra_whitespaces_) {
    const std::string_view space = escape_whitespaces_ ? kSpace : std::string_view(" ");
    while (out.size() >= space.size() &&
           out.compare(out.size() - space.size(), space.size(), space) == 0)
      out.resize(out.size() - space.size());
  }
}

int32_t SpEncoder::piece_id(std::string_view piece) const {
  if (const auto it = reserved_.find(piece); it != reserved_.end()) return it->second;
  if (const auto it = normal_.find(piece); it != normal_.end()) return it->second;
  return unk_;
}

void SpEncoder::unigram(std::string_view s,
                        std::vector<std::pair<std::string_view, int32_t>>& out) const {
  struct Best {
    int32_t id = -1;
    float score = 0;
    int32_t start = -1;
  };
  thread_local std::vector<Best> best;
  best.assign(s.size() + 1, Best());
  const float unk_score = min_score_ - kUnkPenalty;
  size_t pos = 0;
  while (pos < s.size()) {
    const float here = best[pos].score;
    const size_t mblen = std::min(char_len(static_cast<unsigned char>(s[pos])), s.size() - pos);
    bool single = false;
    trie_.prefixes(s, pos, [&](size_t end, int32_t id) {
      const auto& p = pieces_[static_cast<size_t>(id)];
      if (p.type == 5) return;  // unused
      const float cand = p.score + here;
      auto& t = best[end];
      if (t.start < 0 || cand > t.score) t = {id, cand, static_cast<int32_t>(pos)};
      if (end - pos == mblen) single = true;
    });
    if (!single) {
      auto& t = best[pos + mblen];
      const float cand = unk_score + here;
      if (t.start < 0 || cand > t.score) t = {unk_, cand, static_cast<int32_t>(pos)};
    }
    pos += mblen;
  }
  const size_t first = out.size();
  for (size_t end = s.size(); end > 0;) {
    const auto& b = best[end];
    const auto start = static_cast<size_t>(b.start);
    out.emplace_back(s.substr(start, end - start), b.id);
    end = start;
  }
  std::reverse(out.begin() + static_cast<std::ptrdiff_t>(first), out.end());
}

void SpEncoder::bpe(std::string_view s,
                    std::vector<std::pair<std::string_view, int32_t>>& out) const {
  struct Symbol {
    int32_t prev, next;
    size_t begin, len;
  };
  struct Pair {
    float score;
    int32_t left, right;
    size_t size;
    bool operator<(const Pair& o) const {  // the queue pops the highest score, then leftmost
      return score < o.score || (score == o.score && left > o.left);
    }
  };
  thread_local std::vector<Symbol> sym;
  sym.clear();
  for (size_t pos = 0; pos < s.size();) {
    const size_t n = std::min(char_len(static_cast<unsigned char>(s[pos])), s.size() - pos);
    const auto idx = static_cast<int32_t>(sym.size());
    sym.push_back({idx - 1, pos + n < s.size() ? idx + 1 : -1, pos, n});
    pos += n;
  }
  if (sym.empty()) return;
  thread_local std::vector<Pair> heap;
  heap.clear();
  std::priority_queue<Pair> agenda(std::less<Pair>(), std::move(heap));
  std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>> rev_merge;
  auto maybe_add = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const auto& L = sym[static_cast<size_t>(l)];
    const auto& R = sym[static_cast<size_t>(r)];
    const std::string_view piece = s.substr(L.begin, L.len + R.len);
    const auto it = normal_.find(piece);
    if (it == normal_.end()) return;
    const auto& p = pieces_[static_cast<size_t>(it->second)];
    agenda.push({p.score, l, r, piece.size()});
    if (p.type == 5) rev_merge[piece] = {s.substr(L.begin, L.len), s.substr(R.begin, R.len)};
  };
  for (size_t i = 1; i < sym.size(); ++i)
    maybe_add(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));
  while (!agenda.empty()) {
    const Pair top = agenda.top();
    agenda.pop();
    auto& L = sym[static_cast<size_t>(top.left)];
    auto& R = sym[static_cast<size_t>(top.right)];
    if (L.len == 0 || R.len == 0 || L.len + R.len != top.size) continue;
    L.len += R.len;
    L.next = R.next;
    if (R.next >= 0) sym[static_cast<size_t>(R.next)].prev = top.left;
    R.len = 0;
    maybe_add(L.prev, top.left);
    maybe_add(top.left, L.next);
  }
  // Unused pieces are split back into the pieces they were merged from.
  auto resegment = [&](auto&& self, std::string_view w) -> void {
    const int32_t id = piece_id(w);
    if (pieces_[static_cast<size_t>(id)].type != 5) {
      out.emplace_back(w, id);
      return;
    }
    const auto it = rev_merge.find(w);
    if (it == rev_merge.end()) {
      out.emplace_back(w, id);
      return;
    }
    self(self, it->second.first);
    self(self, it->second.second);
  };
  for (int32_t i = 0; i >= 0; i = sym[static_cast<size_t>(i)].next)
    resegment(resegment,
              s.substr(sym[static_cast<size_t>(i)].begin, sym[static_cast<size_t>(i)].len));
}

void SpEncoder::encode(std::string_view text, std::vector<int32_t>& ids) const {
  thread_local std::string norm;
  normalize(text, norm);
  if (norm.empty()) return;
  if (!segment_bpe_) {
    encode_normalized(norm, ids);
    return;
  }
  const std::string_view all = norm;
  size_t start = 0;
  while (start < all.size()) {
    size_t end = all.find(kSpace, start + 1);
    if (end == std::string_view::npos) end = all.size();
    const std::string_view seg = all.substr(start, end - start);
    const size_t first = ids.size();
    const bool cacheable = seg.size() < 256;
    if (!cacheable || !cache_.get(seg, ids)) {
      encode_normalized(seg, ids);
      if (cacheable) cache_.put(seg, ids.data() + first, ids.size() - first);
    }
    // A run of unknowns that spans two segments is one unk.
    if (!byte_fallback_ && first > 0 && ids.size() > first && ids[first] == unk_ &&
        ids[first - 1] == unk_)
      ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(first));
    start = end;
  }
}

void SpEncoder::encode_normalized(std::string_view norm, std::vector<int32_t>& ids) const {
  thread_local std::vector<std::pair<std::string_view, int32_t>> pieces;
  pieces.clear();
  if (type_ == Type::Unigram)
    unigram(norm, pieces);
  else
    bpe(norm, pieces);
  bool prev_unk = false;
  for (const auto& [piece, id] : pieces) {
    const bool unk = id == unk_;
    if (unk && byte_fallback_) {
      for (unsigned char b : piece) ids.push_back(byte_ids_[b] >= 0 ? byte_ids_[b] : unk_);
      prev_unk = false;
      continue;
    }
    if (!(unk && prev_unk)) ids.push_back(id);  // a run of unknowns is one unk
    prev_unk = unk;
  }
}

}  // namespace sculpt::text::detail

namespace sculpt::text::detail {

std::optional<int32_t> SpEncoder::find(std::string_view piece) const {
  if (const auto it = reserved_.find(piece); it != reserved_.end()) return it->second;
  if (const auto it = normal_.find(piece); it != normal_.end()) return it->second;
  return std::nullopt;
}

std::optional<int32_t> SpEncoder::control(std::string_view name) const {
  const auto it = reserved_.find(name);
  if (it == reserved_.end() || pieces_[static_cast<size_t>(it->second)].type != 3)
    return std::nullopt;
  return it->second;
}

std::string SpEncoder::decode(const std::vector<int32_t>& ids) const {
  std::string out, bytes;
  bool at_start = true;  // the first visible piece drops its leading space
  auto flush_bytes = [&] {
    size_t i = 0;
    while (i < bytes.size()) {
      const size_t n = char_len(static_cast<unsigned char>(bytes[i]));
      const std::string_view seq = std::string_view(bytes).substr(i, n);
      if (seq.size() == n && find_invalid_utf8(seq) == std::string_view::npos) {
        out += seq;
        i += n;
      } else {
        out += "\xEF\xBF\xBD";
        ++i;
      }
    }
    bytes.clear();
  };
  for (const int32_t id : ids) {
    if (id < 0 || id >= size()) continue;
    const auto& p = pieces_[static_cast<size_t>(id)];
    if (p.type == 6) {
      bytes += static_cast<char>(byte_of_piece(p.text));
      at_start = false;
      continue;
    }
    flush_bytes();
    if (p.type == 3) continue;  // control: invisible
    if (p.type == 2) {
      out += " \xE2\x81\x87 ";
      at_start = false;
      continue;
    }
    std::string_view text = p.text;
    if (at_start && (add_dummy_prefix_ || remove_extra_whitespaces_) &&
        text.substr(0, kSpace.size()) == kSpace)
      text.remove_prefix(kSpace.size());
    if (!text.empty()) at_start = false;  // a piece that was only the dummy space keeps it on
    size_t pos = 0, hit;
    while ((hit = text.find(kSpace, pos)) != std::string_view::npos) {
      out.append(text.substr(pos, hit - pos));
      out += ' ';
      pos = hit + kSpace.size();
    }
    out.append(text.substr(pos));
  }
  flush_bytes();
  return out;
}

}  // namespace sculpt::text::detail
