// libFuzzer harness: the file-backed datasets' readers, IDX (MNIST), CSV and JSON lines, each
// instrumented from its own source (fuzz_data_readers.cpp). The first byte picks the reader and
// its options; bit 0x80 gzips the file. Every failure must be a UserError naming the file.
#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "core/error.h"
#include "tests/fuzz/fuzz_util.h"

namespace sculpt::fuzz {
void load_idx_dir(const std::string& dir);
void load_csv_file(const std::string& path, int variant);
void load_jsonl_file(const std::string& path, int variant);
}  // namespace sculpt::fuzz

namespace {

std::string put(const std::string& name, const std::string& bytes, bool gz) {
  namespace fs = std::filesystem;
  const std::string raw = sculpt::fuzz::scratch() + "/" + name;
  std::error_code ec;
  fs::remove(raw, ec);
  fs::remove(raw + ".gz", ec);
  if (!gz)
    return sculpt::fuzz::write_input(name, reinterpret_cast<const uint8_t*>(bytes.data()),
                                     bytes.size());
  gzFile f = gzopen((raw + ".gz").c_str(), "wb1");
  if (!bytes.empty()) gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
  return raw + ".gz";
}

}  // namespace

// SCULPT_FUZZ_ENTRY: another name when the sanitizer build replays the corpus in one test binary.
#ifndef SCULPT_FUZZ_ENTRY
#define SCULPT_FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif

extern "C" int SCULPT_FUZZ_ENTRY(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int which = data[0] & 0x0f, variant = (data[0] >> 4) & 0x07;
  const bool gz = data[0] & 0x80;
  const std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    if (which % 3 == 0) {  // IDX: 2 bytes of the images file's length, images, labels
      const size_t n = rest.size() < 2 ? 0 : (uint8_t(rest[0]) | (uint8_t(rest[1]) << 8));
      const std::string body = rest.size() < 2 ? "" : rest.substr(2);
      put("train-images-idx3-ubyte", body.substr(0, n), gz);
      put("train-labels-idx1-ubyte", n < body.size() ? body.substr(n) : "", gz && variant & 1);
      sculpt::fuzz::load_idx_dir(sculpt::fuzz::scratch());
    } else if (which % 3 == 1) {
      sculpt::fuzz::load_csv_file(put("t.csv", rest, gz), variant);
    } else {
      sculpt::fuzz::load_jsonl_file(put("t.jsonl", rest, gz), variant);
    }
  } catch (const sculpt::UserError&) {
  }
  return 0;
}
