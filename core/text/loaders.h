// The two tokenizer formats behind load_tokenizer(). `dir`: the checkpoint directory whose
// tokenizer_config.json / special_tokens_map.json name the special tokens ("" when none).
#pragma once

#include <memory>
#include <string>

#include "core/text/tokenizer.h"

namespace sculpt::text::detail {

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& json_file, const std::string& dir);
std::unique_ptr<Tokenizer> load_sp_tokenizer(const std::string& model_file, const std::string& dir);

// Special token names from a directory's tokenizer_config.json and special_tokens_map.json
// (later file wins), e.g. {"pad_token": "<pad>"}; plus the raw tokenizer_config.json.
struct SpecialTokenNames {
  std::string bos, eos, unk, pad;
  std::string tokenizer_class;
  std::string config_json;         // tokenizer_config.json's text, "" when absent
  std::vector<std::string> files;  // the files read (for the fingerprint)
};
SpecialTokenNames read_special_token_names(const std::string& dir);

}  // namespace sculpt::text::detail
