// Added tokens (special or not) split out of the text before normalization, as
// `tokenizers`' AddedVocabulary does: leftmost-longest matches, single_word, lstrip, rstrip;
// tokens declared `normalized` are matched on the normalized text of the pieces between the
// others.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/text/components.h"

namespace sculpt::text::detail {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  std::string token;  // what decode shows: content, normalized when `normalized` (as tokenizers)
  bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
};

class AddedVocabulary {
 public:
  // `normalizer` (may be null) also normalizes the content of `normalized` tokens.
  AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer);
  AddedVocabulary() = default;

  // `text` -> pieces: added tokens (id >= 0) and the normalized text between them.
  void split(std::string_view text, const Normalizer* normalizer, std::vector<Piece>& out) const;

  const AddedToken* by_id(int32_t id) const;
  const AddedToken* by_content(std::string_view content) const;
  bool is_special_id(int32_t id) const { return special_ids_.count(id) > 0; }
  // tokenizers skips tokens by their text: a model token spelled as a special token goes too.
  bool is_special_text(const std::string& token) const { return special_texts_.count(token) > 0; }
  const std::vector<AddedToken>& tokens() const { return tokens_; }
  bool empty() const { return tokens_.empty(); }

 private:
  // A byte trie of patterns; node 0 is the root.
  struct Matcher {
    std::vector<std::unordered_map<unsigned char, int32_t>> next{1};
    std::vector<int32_t> token{-1};  // index into tokens_, or -1
    bool first_byte[256] = {};
    bool empty() const { return next.size() == 1; }
    void add(const std::string& pattern, int32_t index);
  };
  // Splits `piece` by `m`'s tokens (pieces with ids) and appends to `out`.
  void split_with(const Matcher& m, Piece piece, std::vector<Piece>& out) const;

  std::vector<AddedToken> tokens_;
  Matcher raw_, normalized_;
  std::unordered_map<int32_t, size_t> by_id_;
  std::unordered_map<std::string, size_t> by_content_;
  std::unordered_set<int32_t> special_ids_;
  std::unordered_set<std::string> special_texts_;
};

}  // namespace sculpt::text::detail
