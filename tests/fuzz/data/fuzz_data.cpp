// libFuzzer harness: the file-backed datasets' readers, IDX (MNIST), CSV, JSON lines and
// data.name: text (records, token cache, the whole dataset), each instrumented from its own
// source (fuzz_data_*.cpp). The first byte picks the reader (low 4 bits modulo 6: 0 IDX, 1 CSV,
// 2 jsonl, 3 text records, 4 token cache, 5 text dataset) and its options (bits 4-6); bit 0x80
// gzips the file. Every failure must be a UserError naming the file.
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
const char* text_extension(int variant);
void load_text_records(const std::string& path, int variant);
void parse_token_cache(const std::string& bytes);
void load_text_dataset(const std::string& path, int variant, bool replace);
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
  // data.name: text: a second byte of options, then the file.
  const int text_variant = rest.empty() ? 0 : static_cast<uint8_t>(rest[0]);
  const std::string text_file = rest.empty() ? "" : rest.substr(1);
  const std::string text_name = std::string("t.") + sculpt::fuzz::text_extension(text_variant);
  try {
    if (which % 6 == 3) {  // text records: jsonl, csv, tsv, txt (gz or not)
      sculpt::fuzz::load_text_records(put(text_name, text_file, gz), text_variant);
    } else if (which % 6 == 4) {  // a token cache
      sculpt::fuzz::parse_token_cache(rest);
    } else if (which % 6 == 5) {  // a text dataset through a tokenizer
      sculpt::fuzz::load_text_dataset(put(text_name, text_file, gz), text_variant, variant & 1);
    } else if (which % 3 == 0) {  // IDX: 2 bytes of the images file's length, images, labels
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
