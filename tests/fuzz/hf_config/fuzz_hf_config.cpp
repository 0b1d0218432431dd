// libFuzzer harness: a Hugging Face config.json (core/models/hf/hf_config.cpp) and the size it
// declares against a 1 MB checkpoint. Every failure must be a UserError naming the file.
#include <cstdint>

#include "core/error.h"
#include "core/models/hf/hf_config.h"
#include "tests/fuzz/fuzz_util.h"

// SCULPT_FUZZ_ENTRY: another name when the sanitizer build replays the corpus in one test binary.
#ifndef SCULPT_FUZZ_ENTRY
#define SCULPT_FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif

extern "C" int SCULPT_FUZZ_ENTRY(const uint8_t* data, size_t size) {
  sculpt::fuzz::write_input("config.json", data, size);
  try {
    auto arch = sculpt::models::hf::read_arch(sculpt::fuzz::scratch());
    sculpt::models::hf::check_declared_size(arch, 1 << 20);
  } catch (const sculpt::UserError&) {
  }
  return 0;
}
