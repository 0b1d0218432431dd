// SentencePiece unigram and BPE models read from the `.model` protobuf and run without the
// library (Debian's libsentencepiece bundles a protobuf runtime whose symbols clash with the
// system libprotobuf that the ONNX export loads: both in one process crash at start-up).
// Encoding: the normalizer (the precompiled character map, a Darts double array; dummy prefix,
// extra-whitespace removal, U+2581 escaping), the unigram Viterbi with float path scores (ties:
// the first, shorter candidate, as sentencepiece 0.2 does) and the BPE merge agenda (highest
// score, then leftmost; unused pieces re-split), unknown runs fused or byte-fallback ids.
// Decoding as sentencepiece's DecodeIds: U+2581 -> ' ', the first piece's leading space
// dropped, bytes joined (invalid ones U+FFFD each), unknown " \u2047 ", control pieces empty.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/text/byte_trie.h"
#include "core/text/charsmap.h"
#include "core/text/word_cache.h"

namespace sculpt::text::detail {

class SpEncoder {
 public:
  // nullptr with `why` set when the proto cannot be read or the model is not supported
  // (user-defined pieces, WORD/CHAR models, whitespace as suffix).
  static std::unique_ptr<SpEncoder> from_proto(std::string_view serialized, std::string* why);

  void encode(std::string_view text, std::vector<int32_t>& ids) const;
  // The ids of normalized text (unknown runs fused or bytes), appended to `ids`.
  void encode_normalized(std::string_view norm, std::vector<int32_t>& ids) const;
  void normalize(std::string_view text, std::string& out) const;
  std::string decode(const std::vector<int32_t>& ids) const;  // ids outside the model skipped

  int32_t size() const { return static_cast<int32_t>(pieces_.size()); }
  const std::string& piece(int32_t id) const { return pieces_[static_cast<size_t>(id)].text; }
  std::optional<int32_t> find(std::string_view piece) const;
  int32_t unk_id() const { return unk_; }
  // The id of a control piece named `name` ("<s>", "</s>", "<pad>"), if the model has one.
  std::optional<int32_t> control(std::string_view name) const;

 private:
  enum class Type { Unigram, Bpe };
  struct Piece {
    std::string text;
    float score = 0;
    int type = 1;  // NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4, UNUSED 5, BYTE 6
  };
  void unigram(std::string_view norm, std::vector<std::pair<std::string_view, int32_t>>& out) const;
  void bpe(std::string_view norm, std::vector<std::pair<std::string_view, int32_t>>& out) const;
  int32_t piece_id(std::string_view piece) const;  // unk_ when unknown

  Type type_ = Type::Unigram;
  std::vector<Piece> pieces_;
  std::unordered_map<std::string_view, int32_t> normal_;    // NORMAL, USER_DEFINED, UNUSED
  std::unordered_map<std::string_view, int32_t> reserved_;  // CONTROL, UNKNOWN, BYTE
  ByteTrie trie_;                                           // unigram: the normal pieces
  int32_t unk_ = 0;
  float min_score_ = 0, max_score_ = 0;
  bool byte_fallback_ = false;
  // BPE: no piece holds U+2581 after its start, so merges never cross one and each
  // U+2581-led segment is encoded (and cached) on its own.
  bool segment_bpe_ = false;
  WordCache cache_;
  int32_t byte_ids_[256] = {};
  // Normalizer spec.
  CharsMap charsmap_;  // the precompiled character map (longest rule at each position)
  bool add_dummy_prefix_ = true, remove_extra_whitespaces_ = true, escape_whitespaces_ = true;
};

}  // namespace sculpt::text::detail
