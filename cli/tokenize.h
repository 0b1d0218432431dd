// `sculpt tokenize FILE --tokenizer DIR`: a tokenizer checked without training.
#pragma once

#include <cstdint>
#include <string>

namespace sculpt::cli {

struct TokenizeArgs {
  std::string file;         // text, one example per line
  std::string tokenizer;    // a checkpoint directory, tokenizer.json or .model file
  bool stats = false;       // print tokens, tokens/line and the unknown rate instead of ids
  int64_t max_length = 0;   // truncate each line's ids to this many (0: no limit)
  bool no_special = false;  // leave out the template's special tokens
  int threads = 0;          // encoding threads (0: all cores)
};

// Prints one line of space-separated ids per input line (or the stats). Missing files,
// malformed tokenizers and invalid UTF-8 (file, line, byte offset) throw UserError (exit 2).
int cmd_tokenize(const TokenizeArgs& args);

}  // namespace sculpt::cli
