// libFuzzer harness: the safetensors reader (header, then every tensor read, copied and mapped).
// Every failure must be a UserError naming the file.
#include <cstdint>

#include "core/error.h"
#include "core/io/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

// SCULPT_FUZZ_ENTRY: another name when the sanitizer build replays the corpus in one test binary.
#ifndef SCULPT_FUZZ_ENTRY
#define SCULPT_FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif

extern "C" int SCULPT_FUZZ_ENTRY(const uint8_t* data, size_t size) {
  const std::string path = sculpt::fuzz::write_input("w.safetensors", data, size);
  try {
    auto header = sculpt::io::read_safetensors_header(path);
    auto tensors = sculpt::io::load_safetensors(path);
    sculpt::io::MappedSafetensors mapped(path);
    for (const auto& e : mapped.header().tensors) {
      auto v = mapped.view(e);
      if (v.numel() > 0) (void)v.sum();  // touches every byte the header points at
      mapped.release(e);
    }
  } catch (const sculpt::UserError&) {
  }
  return 0;
}
