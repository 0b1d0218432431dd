// libFuzzer harness: a tokenizer read from bytes (core/text: tokenizer.json or a SentencePiece
// .model) and a short text encoded and decoded with it. Every failure must be a UserError
// (a ConfigError naming the file while loading); every id it gives must be one of its ids.
//   byte 0   bit 0: a .model file (else tokenizer.json); bit 1: in a folder with a Llama-style
//            tokenizer_config.json (special tokens, added_tokens_decoder); bit 2: encode a
//            pair; bit 3: truncate and pad to 8 ids; bit 4: no special tokens
//   byte 1   L: the text is the input's last L bytes (not UTF-8 bytes read as '?'); L = 0: a
//            fixed mixed-script text
//   rest     the file
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/text/tokenizer.h"
#include "core/text/unicode.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

namespace fs = std::filesystem;

constexpr const char* kDefaultText =
    "Hello world, it's 2024! \xC3\xA7"
    "a va? \xE6\x97\xA5\xE6\x9C\xAC <s>[CLS] don't  \t x\xE2\x96\x81y";
constexpr const char* kConfig =
    R"({"tokenizer_class": "LlamaTokenizer", "add_bos_token": true, "add_eos_token": true,
        "bos_token": "<s>", "eos_token": {"content": "</s>"}, "unk_token": "<unk>",
        "pad_token": "<pad>", "added_tokens_decoder": {"0": {"content": "<unk>"},
        "1": {"content": "<s>", "special": true}, "2": {"content": "</s>", "special": true}}})";

void put(const std::string& path, const std::string& bytes) {
  sculpt::fuzz::write_input(fs::path(path).filename().string(),
                            reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

// The ids of an encoding are the tokenizer's, and its three lists line up.
void check(const sculpt::text::Tokenizer& tok, const sculpt::text::Encoding& e) {
  const int64_t n = tok.vocab_size();
  for (const int32_t id : e.ids)
    if (id < 0 || id >= n) std::abort();
  if (e.type_ids.size() != e.ids.size() || e.attention_mask.size() != e.ids.size()) std::abort();
}

}  // namespace

// SCULPT_FUZZ_ENTRY: another name when the sanitizer build replays the corpus in one test binary.
#ifndef SCULPT_FUZZ_ENTRY
#define SCULPT_FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif

extern "C" int SCULPT_FUZZ_ENTRY(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const int sel = data[0];
  const std::string body(reinterpret_cast<const char*>(data + 2), size - 2);
  const size_t tail = std::min<size_t>(data[1], body.size());
  std::string text = tail ? body.substr(body.size() - tail) : kDefaultText;
  for (size_t bad; (bad = sculpt::text::find_invalid_utf8(text)) != std::string::npos;)
    text[bad] = '?';
  const std::string dir = sculpt::fuzz::scratch();
  const std::string name = sel & 1 ? "tokenizer.model" : "tokenizer.json";
  for (const char* f : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json"}) {
    std::error_code ec;
    fs::remove(dir + "/" + f, ec);
  }
  put(dir + "/" + name, body.substr(0, body.size() - tail));
  if (sel & 2) put(dir + "/tokenizer_config.json", kConfig);
  try {
    const auto tok = sculpt::text::load_tokenizer(sel & 2 ? dir : dir + "/" + name);
    sculpt::text::EncodeOptions o;
    o.add_special_tokens = !(sel & 16);
    if (sel & 8) o.max_length = 8, o.pad_to_max_length = true;
    const auto e = sel & 4 ? tok->encode(text, o, std::string_view(text).substr(text.size() / 2))
                           : tok->encode(text, o);
    check(*tok, e);
    if ((sel & 8) && e.ids.size() != 8) std::abort();
    (void)tok->decode(e.ids, true);
    (void)tok->decode(e.ids, false);
    const int32_t v = static_cast<int32_t>(tok->vocab_size());
    (void)tok->decode({-1, 0, 1, v - 1, v, INT32_MAX}, false);
    for (const int32_t id : {-1, 0, v - 1, v}) (void)tok->id_to_token(id);
    (void)tok->token_to_id(text);
    for (const auto& id : {tok->pad_id(), tok->unk_id(), tok->bos_id(), tok->eos_id()})
      if (id && (*id < 0 || *id >= v)) std::abort();
  } catch (const sculpt::UserError&) {
  }
  return 0;
}
