// The Hugging Face writer of `sculpt export --format hf` (export.h).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "core/io/safetensors.h"
#include "core/models/hf/hf_model.h"

namespace sculpt::compression {

struct HfExport {
  models::hf::Arch arch;  // the exported architecture (sizes after compression)
  int64_t tensors = 0;
  std::vector<std::string> copied;  // tokenizer and generation files copied from the source
  io::NamedTensors weights;         // the float tensors, when model.safetensors was not written
};

// Writes config.json, model.safetensors and the source's tokenizer files into `out`, from
// `model` (weights materialized) that was built from `source` with `head` (`classes`: its
// classifier's size). UserError naming the layer when config.json cannot describe the model.
// With `write_weights` false, model.safetensors is not written and its tensors (checkpoint names,
// float32) are returned in `weights` instead, for a writer that stores them in another form
// (compressed-tensors).
HfExport write_hf_export(models::Model& model, const models::hf::Arch& source,
                         models::hf::Head head, int64_t classes, const std::filesystem::path& out,
                         bool write_weights = true);

}  // namespace sculpt::compression
