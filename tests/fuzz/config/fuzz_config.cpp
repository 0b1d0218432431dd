// libFuzzer harness: the config reader (YAML, extends:, overrides, typed sections).
// Input: YAML text, then NUL-separated `key.path=value` overrides. Every failure must be a
// UserError (ConfigError): anything else escaping, a crash or a sanitizer report is a bug.
#include <cstdint>
#include <string>
#include <vector>

#include "core/config/config.h"
#include "core/config/errors.h"
#include "core/error.h"
#include "tests/fuzz/fuzz_util.h"

// SCULPT_FUZZ_ENTRY: another name when the sanitizer build replays the corpus in one test binary.
#ifndef SCULPT_FUZZ_ENTRY
#define SCULPT_FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif

extern "C" int SCULPT_FUZZ_ENTRY(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> parts;
  for (size_t begin = 0;;) {
    const size_t nul = input.find('\0', begin);
    parts.push_back(input.substr(begin, nul - begin));
    if (nul == std::string::npos || parts.size() == 9) break;
    begin = nul + 1;
  }
  const std::string path = sculpt::fuzz::write_input(
      "run.yaml", reinterpret_cast<const uint8_t*>(parts[0].data()), parts[0].size());
  const std::vector<std::string> overrides(parts.begin() + 1, parts.end());
  try {
    auto cfg = sculpt::config::Config::load(path, overrides);
    (void)cfg.dump();
  } catch (const sculpt::UserError&) {
  }
  return 0;
}
