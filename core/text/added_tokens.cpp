#include "core/text/added_tokens.h"

#include "core/text/unicode.h"

namespace sculpt::text::detail {

void AddedVocabulary::Matcher::add(const std::string& pattern, int32_t index) {
  if (pattern.empty()) return;
  int32_t node = 0;
  for (unsigned char b : pattern) {
    auto it = next[static_cast<size_t>(node)].find(b);
    if (it == next[static_cast<size_t>(node)].end()) {
      next.emplace_back();
      token.push_back(-1);
      it = next[static_cast<size_t>(node)].emplace(b, static_cast<int32_t>(next.size() - 1)).first;
    }
    node = it->second;
  }
  if (token[static_cast<size_t>(node)] < 0) token[static_cast<size_t>(node)] = index;
  first_byte[static_cast<unsigned char>(pattern[0])] = true;
}

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer)
    : tokens_(std::move(tokens)) {
  for (size_t k = 0; k < tokens_.size(); ++k) {
    auto& t = tokens_[k];
    by_id_[t.id] = k;
    by_content_[t.content] = k;
    t.token = t.content;
    if (t.special) special_ids_.insert(t.id), special_texts_.insert(t.content);
    if (t.normalized && normalizer) {
      std::string c = t.content;
      normalizer->normalize(c);
      t.token = c;
      normalized_.add(c, static_cast<int32_t>(k));
    } else if (t.normalized) {
      normalized_.add(t.content, static_cast<int32_t>(k));
    } else {
      raw_.add(t.content, static_cast<int32_t>(k));
    }
  }
}

const AddedToken* AddedVocabulary::by_id(int32_t id) const {
  const auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}
const AddedToken* AddedVocabulary::by_content(std::string_view content) const {
  const auto it = by_content_.find(std::string(content));
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

namespace {
char32_t last_char(std::string_view s) {
  size_t k = s.size() - 1;
  while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
  return next_char(s, k);
}
}  // namespace

void AddedVocabulary::split_with(const Matcher& m, Piece piece, std::vector<Piece>& out) const {
  const std::string& s = piece.text;
  if (m.empty() || s.empty()) {
    if (!s.empty()) out.push_back(std::move(piece));
    return;
  }
  size_t start_offset = 0, i = 0;
  auto push_text = [&](size_t a, size_t b) {
    if (b > a) out.push_back({s.substr(a, b - a), -1, piece.at_origin && a == 0});
  };
  while (i < s.size()) {
    if (!m.first_byte[static_cast<unsigned char>(s[i])]) {
      ++i;
      continue;
    }
    // Longest pattern that starts at i.
    int32_t node = 0, found = -1;
    size_t found_end = 0;
    for (size_t k = i; k < s.size(); ++k) {
      const auto& edges = m.next[static_cast<size_t>(node)];
      const auto it = edges.find(static_cast<unsigned char>(s[k]));
      if (it == edges.end()) break;
      node = it->second;
      if (m.token[static_cast<size_t>(node)] >= 0) {
        found = m.token[static_cast<size_t>(node)];
        found_end = k + 1;
      }
    }
    if (found < 0) {
      ++i;
      continue;
    }
    const AddedToken& t = tokens_[static_cast<size_t>(found)];
    size_t start = i, stop = found_end;
    i = found_end;  // matches never overlap, a rejected one included
    if (t.single_word) {
      const bool start_space =
          start == 0 || !is_word_char(last_char(std::string_view(s).substr(0, start)));
      size_t j = stop;
      const bool stop_space = stop == s.size() || !is_word_char(next_char(s, j));
      if (!start_space || !stop_space) continue;
    }
    if (t.lstrip) {
      size_t ns = start;
      while (ns > 0) {
        size_t k = ns - 1;
        while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
        size_t j = k;
        if (!is_whitespace(next_char(s, j))) break;
        ns = k;
      }
      start = std::max(ns, start_offset);
    }
    if (t.rstrip) {
      while (stop < s.size()) {
        size_t j = stop;
        if (!is_whitespace(next_char(s, j))) break;
        stop = j;
      }
      i = stop;
    }
    push_text(start_offset, start);
    out.push_back({s.substr(start, stop - start), t.id, false});
    start_offset = stop;
  }
  push_text(start_offset, s.size());
}

void AddedVocabulary::split(std::string_view text, const Normalizer* normalizer,
                            std::vector<Piece>& out) const {
  out.clear();
  if (text.empty()) return;
  thread_local std::vector<Piece> first;
  first.clear();
  split_with(raw_, Piece{std::string(text), -1, true}, first);
  for (auto& p : first) {
    if (p.id >= 0) {
      out.push_back(std::move(p));
      continue;
    }
    if (normalizer) normalizer->normalize(p.text);
    split_with(normalized_, std::move(p), out);
  }
}

}  // namespace sculpt::text::detail
