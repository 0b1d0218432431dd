#include "cli/tokenize.h"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/text/tokenizer.h"
#include "core/text/unicode.h"

namespace sculpt::cli {

int cmd_tokenize(const TokenizeArgs& args) {
  auto tok = text::load_tokenizer(args.tokenizer);
  std::ifstream in(args.file, std::ios::binary);
  SCULPT_CHECK(in, args.file, ": cannot read the file");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t bad = text::find_invalid_utf8(line);
    SCULPT_CHECK(bad == std::string::npos, args.file, ":", lines.size() + 1,
                 ": not valid UTF-8 at byte ", bad, " of the line");
    lines.push_back(std::move(line));
  }
  text::EncodeOptions options;
  options.add_special_tokens = !args.no_special;
  options.max_length = args.max_length;
  const auto encodings = tok->encode_batch(lines, options, args.threads);
  if (!args.stats) {
    std::string out;
    for (const auto& e : encodings) {
      out.clear();
      for (size_t i = 0; i < e.ids.size(); ++i) {
        if (i) out += ' ';
        out += std::to_string(e.ids[i]);
      }
      out += '\n';
      std::fwrite(out.data(), 1, out.size(), stdout);
    }
    return 0;
  }
  int64_t tokens = 0, unknown = 0;
  const auto unk = tok->unk_id();
  for (const auto& e : encodings) {
    tokens += static_cast<int64_t>(e.ids.size());
    if (unk)
      for (const int32_t id : e.ids) unknown += id == *unk;
  }
  const double per_line =
      lines.empty() ? 0.0 : static_cast<double>(tokens) / static_cast<double>(lines.size());
  const double rate = tokens ? static_cast<double>(unknown) / static_cast<double>(tokens) : 0.0;
  std::printf("lines: %zu\ntokens: %lld\ntokens/line: %.2f\nunknown: %lld (%.4f%%)\nvocab: %lld\n",
              lines.size(), static_cast<long long>(tokens), per_line,
              static_cast<long long>(unknown), 100.0 * rate,
              static_cast<long long>(tok->vocab_size()));
  return 0;
}

}  // namespace sculpt::cli
