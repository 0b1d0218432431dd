// The pieces of a `tokenizer.json` pipeline, as Hugging Face `tokenizers` runs them:
// added tokens split out -> normalizer (per piece) -> pre-tokenizer -> model -> post-processor;
// decoding: ids -> tokens -> decoder chain. Internal to core/text.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/text/tokenizer.h"

namespace sculpt::text::detail {

// Where a JSON value sits, for errors: the file and the path inside it
// ("normalizer.normalizers[1]").
struct Where {
  std::string file;
  std::string path;
  Where at(const std::string& key) const { return {file, path.empty() ? key : path + "." + key}; }
  Where at(size_t index) const { return {file, path + "[" + std::to_string(index) + "]"}; }
};
// Throws config::ConfigError: "file: path: message".
[[noreturn]] void fail(const Where& where, const std::string& message);
// An unsupported `type`: names the value and the supported list.
[[noreturn]] void fail_unsupported(const Where& where, const std::string& what,
                                   const std::string& value,
                                   const std::vector<std::string>& supported);

// JSON accessors that fail with the path.
const nlohmann::json& member(const nlohmann::json& j, const char* key, const Where& where);
std::string get_string(const nlohmann::json& j, const char* key, const Where& where,
                       std::optional<std::string> fallback = std::nullopt);
bool get_bool(const nlohmann::json& j, const char* key, const Where& where, bool fallback);

// A piece of the text on its way through the pipeline. `id` >= 0: an added token, already
// final. `at_origin`: the piece starts at offset 0 of the original text (Metaspace "first").
struct Piece {
  std::string text;
  int32_t id = -1;
  bool at_origin = false;
};

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& s) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits (and may rewrite) every piece whose id < 0; pieces that end up empty are dropped.
  virtual void split(std::vector<Piece>& pieces) const = 0;
};

class Model {
 public:
  virtual ~Model() = default;
  virtual void tokenize(std::string_view word, std::vector<int32_t>& out) const = 0;
  virtual std::optional<int32_t> token_to_id(std::string_view token) const = 0;
  virtual std::optional<std::string> id_to_token(int32_t id) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual std::optional<int32_t> unk_id() const { return std::nullopt; }
};

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // Ids the template adds for one text (pair=false) or two.
  virtual size_t added_tokens(bool pair) const = 0;
  // `a` (and `b`) -> the final encoding with special tokens when `add_special`.
  virtual Encoding process(Encoding a, const Encoding* b, bool add_special) const = 0;
  // Every id the template can add (checked against the vocabulary when the file is read).
  virtual std::vector<int32_t> special_ids() const { return {}; }
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const Where& where);
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const Where& where);
std::unique_ptr<Model> make_model(const nlohmann::json& j, const Where& where);
std::unique_ptr<PostProcessor> make_post_processor(const nlohmann::json& j, const Where& where);
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j, const Where& where);

// Concatenation without specials: type ids 0 for `a`, 1 for `b`.
Encoding concat_plain(Encoding a, const Encoding* b);

// GPT-2's byte <-> printable-character map (ByteLevel pre-tokenizer and decoder).
const std::string& byte_to_unicode(uint8_t byte);  // UTF-8 of the mapped character
int unicode_to_byte(char32_t c);                   // -1 when `c` is not a mapped character

// Truncation (longest first for pairs) and padding per EncodeOptions, after post-processing
// reserved `reserved` ids for special tokens.
void truncate_pair(Encoding& a, Encoding* b, size_t max_total);
// The last step of every encode: cut to max_length (what post-processing added included), then
// pad to it when asked.
void truncate_and_pad(Encoding& e, const EncodeOptions& options, int32_t pad_id);

// FNV-1a 64 over files' bytes, hex.
std::string fingerprint_files(const std::vector<std::string>& paths);

// Limits on what a tokenizer's files may declare (docs/security.md): a small file cannot make
// the reader allocate, recurse or loop beyond them.
constexpr size_t kMaxFileBytes = size_t(100) << 20;  // tokenizer.json, .model, *_config.json
constexpr int kMaxJsonDepth = 64;                    // nesting of [ and {
// Ids may leave holes: a vocabulary of N entries (and its added tokens) has ids below N + this.
constexpr int64_t kIdSlack = 65536;

// The whole regular file of at most kMaxFileBytes; throws config::ConfigError naming it
// otherwise or when it cannot be read.
std::string read_file(const std::string& path);
// `text` as JSON nested at most kMaxJsonDepth levels; a ConfigError naming `where` otherwise.
nlohmann::json parse_json(const std::string& text, const Where& where);
// An integer id in [0, bound); a ConfigError naming `where`, the value, the bound and
// `bound_why` (what the bound is) otherwise.
int32_t get_id(const nlohmann::json& v, int64_t bound, const Where& where,
               const std::string& bound_why);

}  // namespace sculpt::text::detail
