// The safetensors format (what Python's `safetensors` reads): 8-byte little-endian header
// length, a JSON header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}},
// then the raw little-endian tensor bytes. Writes are atomic.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace sculpt::io {

struct TensorEntry {
  std::string name;
  std::string dtype;  // F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL
  std::vector<int64_t> shape;
  int64_t begin = 0, end = 0;  // byte offsets in the data section
};

struct SafetensorsHeader {
  std::vector<TensorEntry> tensors;  // in file order of their data
  std::map<std::string, std::string> metadata;
  int64_t data_start = 0;  // file offset of the data section
};

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});
// Throws UserError naming the file (and the tensor) for a truncated or malformed file.
SafetensorsHeader read_safetensors_header(const std::string& path);
NamedTensors load_safetensors(const std::string& path);

// A safetensors file mapped into memory read-only, for loading checkpoints larger than the
// memory one extra copy would take: view() is a tensor over the mapping (no copy, valid while
// this object lives); release() gives the pages of a tensor already copied back to the kernel,
// so the mapping does not stay resident beside the model's own copy.
class MappedSafetensors {
 public:
  explicit MappedSafetensors(const std::string& path);  // the header is checked as above
  ~MappedSafetensors();
  MappedSafetensors(const MappedSafetensors&) = delete;
  MappedSafetensors& operator=(const MappedSafetensors&) = delete;
  const std::string& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  const TensorEntry* find(const std::string& name) const;
  at::Tensor view(const TensorEntry& e) const;
  // Bytes [from, to) of the tensor (to < 0: its end).
  void release(const TensorEntry& e, int64_t from = 0, int64_t to = -1) const;

 private:
  std::string path_;
  SafetensorsHeader header_;
  std::map<std::string, size_t> index_;
  void* base_ = nullptr;
  size_t size_ = 0;
};

}  // namespace sculpt::io
