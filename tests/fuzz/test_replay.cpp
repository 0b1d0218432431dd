// The sanitizer build (cmake/SculptSanitizeReaders.cmake) replays every seed of the fuzz corpora
// and every hostile case through the readers in this process, with ASan + UBSan: the harnesses'
// entry points, renamed (SCULPT_FUZZ_ENTRY), each returns normally for every input.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

extern "C" int sculpt_fuzz_config(const uint8_t* data, size_t size);
extern "C" int sculpt_fuzz_safetensors(const uint8_t* data, size_t size);
extern "C" int sculpt_fuzz_data(const uint8_t* data, size_t size);
extern "C" int sculpt_fuzz_hf_config(const uint8_t* data, size_t size);
extern "C" int sculpt_fuzz_tokenizer(const uint8_t* data, size_t size);

namespace fs = std::filesystem;

namespace {

using Entry = int (*)(const uint8_t*, size_t);

std::vector<fs::path> files_under(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::string bytes_of(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void replay(Entry entry, const fs::path& dir, const std::string& prefix = "") {
  size_t n = 0;
  for (const auto& p : files_under(dir)) {
    INFO(p.string());
    const std::string b = prefix + bytes_of(p);
    CHECK(entry(reinterpret_cast<const uint8_t*>(b.data()), b.size()) == 0);
    ++n;
  }
  CHECK(n > 0);
}

const fs::path kFuzz = fs::path(SCULPT_SOURCE_DIR) / "tests" / "fuzz";
const fs::path kHostile = fs::path(SCULPT_SOURCE_DIR) / "tests" / "hostile" / "cases";

}  // namespace

TEST_CASE("sanitize: the config reader takes every config seed and hostile YAML", "[sanitize]") {
  replay(sculpt_fuzz_config, kFuzz / "config" / "corpus");
  replay(sculpt_fuzz_config, kHostile / "yaml");
}

TEST_CASE("sanitize: the safetensors reader takes every seed and hostile file", "[sanitize]") {
  replay(sculpt_fuzz_safetensors, kFuzz / "safetensors" / "corpus");
  replay(sculpt_fuzz_safetensors, kHostile / "safetensors");
}

TEST_CASE("sanitize: the IDX, CSV and jsonl readers take every seed and hostile file",
          "[sanitize]") {
  replay(sculpt_fuzz_data, kFuzz / "data" / "corpus");
  replay(sculpt_fuzz_data, kHostile / "csv", std::string(1, '\x01'));
  replay(sculpt_fuzz_data, kHostile / "jsonl", std::string(1, '\x02'));
}

TEST_CASE("sanitize: the Hugging Face config.json reader takes every seed and hostile file",
          "[sanitize]") {
  replay(sculpt_fuzz_hf_config, kFuzz / "hf_config" / "corpus");
}

TEST_CASE("sanitize: the tokenizer readers take every seed and hostile tokenizer", "[sanitize]") {
  replay(sculpt_fuzz_tokenizer, kFuzz / "tokenizer" / "corpus");
  size_t n = 0;
  for (const auto& p : files_under(kHostile / "tokenizer")) {
    const std::string name = p.filename().string();
    if (name != "tokenizer.json" && name != "tokenizer.model") continue;
    INFO(p.string());
    // byte 0: a .model file or not; byte 1: 0 (the harness's own text)
    const std::string b = std::string(1, name == "tokenizer.model" ? '\x01' : '\x00') +
                          std::string(1, '\0') + bytes_of(p);
    CHECK(sculpt_fuzz_tokenizer(reinterpret_cast<const uint8_t*>(b.data()), b.size()) == 0);
    ++n;
  }
  CHECK(n > 40);
}

TEST_CASE("sanitize: the text dataset readers take every hostile text file", "[sanitize]") {
  size_t n = 0;
  const std::vector<std::string> formats = {".jsonl", ".csv", ".tsv", ".txt"};
  for (const auto& p : files_under(kHostile / "text")) {
    const std::string name = p.filename().string();
    if (name.rfind("data.", 0) != 0 || name == "data.yaml") continue;
    char format = 0;
    for (size_t k = 0; k < formats.size(); ++k)
      if (name.find(formats[k]) != std::string::npos) format = static_cast<char>(k);
    INFO(p.string());
    for (const char selector : {'\x03', '\x05'}) {  // the records, the whole dataset
      const std::string b = std::string(1, selector) + std::string(1, format) + bytes_of(p);
      CHECK(sculpt_fuzz_data(reinterpret_cast<const uint8_t*>(b.data()), b.size()) == 0);
    }
    ++n;
  }
  CHECK(n > 20);
}
