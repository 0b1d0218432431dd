// An exported model folder (the quantize pass's <run>/quantized, the prune pass's <run>/sparse):
// model.safetensors with the tensors and manifest.json naming the format, replaced as a whole.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "core/io/safetensors.h"

namespace sculpt::compression {

// Writes `tensors` and `manifest` (its "bytes" set to the tensor file's size) to `dir`
// atomically; `format` goes into the tensor file's metadata.
void write_export(const std::string& dir, const io::NamedTensors& tensors,
                  nlohmann::json& manifest, const std::string& format);

// A folder written by write_export, read back.
class ExportReader {
 public:
  // UserError naming the folder when it is not an export of `format` (`writer` says what writes
  // one, for the message).
  ExportReader(const std::string& dir, const std::string& format, const std::string& writer);
  const nlohmann::json& manifest() const { return manifest_; }
  const std::string& manifest_path() const { return manifest_path_; }
  const std::string& tensors_path() const { return tensors_path_; }
  bool has(const std::string& name) const { return tensors_.count(name) > 0; }
  // Removes and returns a tensor; UserError naming the file when it is missing.
  at::Tensor take(const std::string& name);
  // The tensors not taken yet.
  std::map<std::string, at::Tensor>& rest() { return tensors_; }

 private:
  nlohmann::json manifest_;
  std::string manifest_path_, tensors_path_;
  std::map<std::string, at::Tensor> tensors_;
};

}  // namespace sculpt::compression
