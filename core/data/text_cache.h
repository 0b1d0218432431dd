// The token cache of data.name: text (text_files.h): the file format, its writer and its
// checked reader. Internal to core/data.
//
// The cache file (`<file>.sculpt-tok-<key>.bin`, version 1), every section 8-byte aligned:
//   "SCULPTTK" | u32 version | u32 header bytes | header JSON | sections ... | "SCULPTOK"
// The header names the data file's hash, the tokenizer's fingerprint, the options that change
// the ids, the shape, the counts and every section's [offset, bytes]:
//   lines int64[rows]          the record's line in the data file (errors name it)
//   label_ids int32[rows]      classify/pair: index into header.labels (the file's labels, sorted)
//   offsets int64[rows + 1]    ids of row r: ids[offsets[r], offsets[r + 1])
//   ids int32[...]             (lm: the whole stream, every record + eos)
//   type_ids uint8[...]        pair: the token type id of each id (the tokenizer's template)
//   target_offsets, target_ids seq2seq targets (ending with eos when there is one)
// A cache whose size, trailer, header or ids do not check out, or that another file, tokenizer
// or set of options wrote, is never used: the reader says why, and the caller rebuilds it.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "core/data/text_records.h"

namespace sculpt::data::textdata {

constexpr uint32_t kVersion = 1;

// A fast 64-bit hash of bytes (cache keys and data hashes; not cryptographic), and its hex.
uint64_t hash_bytes(const char* p, size_t n, uint64_t seed = 0);
std::string hex64(uint64_t v);

// Cache file assembly: named sections, then finish() the file's bytes.
class Writer {
 public:
  template <class T>
  void section(const std::string& name, const std::vector<T>& v) {
    sections_.emplace_back(
        name, std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T)));
  }
  std::string finish(nlohmann::json header);

 private:
  std::vector<std::pair<std::string, std::string>> sections_;
};

// What one tokenized file holds, read from cache bytes (mapped or in memory).
struct TokenView {
  nlohmann::json header;
  Shape shape = Shape::classify;
  int64_t rows = 0;
  const int64_t* lines = nullptr;
  const int32_t* label_ids = nullptr;
  const int64_t* offsets = nullptr;
  const int32_t* ids = nullptr;
  const uint8_t* type_ids = nullptr;  // pair: the token type id of each id
  int64_t n_ids = 0;
  const int64_t* target_offsets = nullptr;
  const int32_t* target_ids = nullptr;
  int64_t n_target_ids = 0;
  std::vector<std::string> labels;
  int64_t longest = 0, longest_target = 0;
};

// A read-only mapping of a whole file.
class Mapping {
 public:
  explicit Mapping(const std::string& path);
  ~Mapping();
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  bool ok() const { return data_ != nullptr; }
  const char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  int fd_ = -1;
  const char* data_ = nullptr;
  size_t size_ = 0;
};

// What a cache must say to be used.
struct Expect {
  std::string data_hash, tokenizer, options;
  int64_t vocab_size = 0;
};

// The view of cache bytes, or "" and the reason it cannot be used.
std::string parse_cache(const char* p, size_t n, const Expect& want, TokenView& v);

}  // namespace sculpt::data::textdata
