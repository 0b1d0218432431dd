// Tokenizers that ship with Hugging Face checkpoints: `tokenizer.json` (byte-level BPE,
// WordPiece, Unigram with their normalizers, pre-tokenizers, post-processors and added tokens)
// and SentencePiece `.model` files. No torch here: the text readers and `sculpt tokenize` use it
// without LibTorch's headers.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sculpt::text {

// One encoded text (or pair): ids with the special tokens the post-processor adds,
// then truncated and padded as the options ask.
struct Encoding {
  std::vector<int32_t> ids;
  std::vector<int32_t> type_ids;        // segment ids (0 for the first text, 1 for the pair)
  std::vector<uint8_t> attention_mask;  // 1 for a real token, 0 for padding
};

struct EncodeOptions {
  bool add_special_tokens = true;  // the post-processor's template ([CLS] ... [SEP], <s>, </s>)
  int64_t max_length = 0;          // 0: no limit; otherwise truncate to this many ids
  bool pad_to_max_length = false;  // pad every encoding to max_length (needs max_length > 0)
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // ids of `text` (and of `pair`, when given) as the Python library returns them.
  virtual Encoding encode(std::string_view text, const EncodeOptions& options = {},
                          std::optional<std::string_view> pair = std::nullopt) const = 0;
  // Many texts on `threads` threads (0: hardware concurrency); the same result as encode().
  virtual std::vector<Encoding> encode_batch(const std::vector<std::string>& texts,
                                             const EncodeOptions& options = {},
                                             int threads = 0) const;
  virtual std::string decode(const std::vector<int32_t>& ids,
                             bool skip_special_tokens = true) const = 0;
  virtual int64_t vocab_size() const = 0;  // ids are in [0, vocab_size)
  virtual std::optional<int32_t> token_to_id(std::string_view token) const = 0;
  virtual std::string id_to_token(int32_t id) const = 0;
  // Special ids, when the tokenizer has them (padding uses pad_id, else 0).
  virtual std::optional<int32_t> pad_id() const = 0;
  virtual std::optional<int32_t> unk_id() const = 0;
  virtual std::optional<int32_t> bos_id() const = 0;
  virtual std::optional<int32_t> eos_id() const = 0;
  // A stable fingerprint of the tokenizer's files (hex), for cache keys.
  virtual std::string fingerprint() const = 0;
};

// A tokenizer from a path: a directory (tokenizer.json preferred, else a SentencePiece
// `tokenizer.model` / `spiece.model`, with tokenizer_config.json / special_tokens_map.json read
// for the special tokens), a `tokenizer.json` file, or a `.model` file. A missing or malformed
// file, or an unsupported model type / normalizer / pre-tokenizer, throws config::ConfigError
// naming the file, the JSON path and the supported list (exit 2 at the CLI).
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

}  // namespace sculpt::text
