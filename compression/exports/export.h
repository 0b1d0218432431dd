// `sculpt export RUN_DIR --format F`: a trained (and compressed) run written in a layout another
// runtime loads, then checked against Sculpt's own numbers. Formats: hf (the Hugging Face
// layout of a model that came from a checkpoint folder), compressed-tensors (that layout with the
// quantized Linear and Embedding weights of the run's integer model, <run>/quantized, stored as
// the `compressed-tensors` package names them, for transformers and vLLM; ct_export.h), onnx (every
// built-in family and the Hugging Face ones as ONNX opset 17, QDQ int8 for a quantized run;
// onnx_export.h). The output folder appears whole or not at all (written beside it, renamed into
// place); export.json in it records the source run, what the model reads (inputs, outputs, the
// dataset's normalization, label names) and the verification. `--log-level debug` prints the
// time of each step (a 124M-parameter model exports in a few seconds: bench/export_time.sh).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace sculpt::compression {

struct ExportRequest {
  std::string run_dir;  // a run folder (config.yaml, model.safetensors)
  std::string format;   // see export_formats()
  std::string out;      // "": <run>/export-<format>
  bool force = false;   // replace an existing `out`
  bool verify = true;   // reload the export and compare its outputs with the run's model
};

const std::vector<std::string>& export_formats();

// Writes the export; returns export.json's contents. UserError (exit 2, nothing written) for an
// unknown format, a run without weights, a model the format cannot express (naming the layer
// and why), an existing `out` without `force`, or a failed verification (onnx: a failed
// verification is a std::runtime_error, exit 1; a missing Python with onnx/onnxruntime a UserError).
nlohmann::json export_run(const ExportRequest& request);

}  // namespace sculpt::compression
