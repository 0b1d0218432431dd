// The compressed-tensors writer of `sculpt export --format compressed-tensors` (export.h): the
// Hugging Face layout (hf_export.h) whose quantized Linear weights are replaced by the integer
// values and scales of the run's own integer model (<run>/quantized, int8_model.h), stored as the
// `compressed-tensors` package (0.20.1) names them, with config.json's `quantization_config`
// saying how; transformers (with compressed-tensors installed) and vLLM read it.
//
// Per Linear layer P of the quantized model (P the module's checkpoint name):
//   input quantized (W8A8, WnA8)   format int-quantized: P.weight (int8 grid values, [out, in]),
//                                  P.weight_scale (float32, [out, 1] per channel, [1] per tensor,
//                                  [out, in / g] per group), P.input_scale (float32 [1]) and, for
//                                  an asymmetric or unsigned input grid, P.input_zero_point
//                                  (int8 [1]): the run's static per-tensor input quantization.
//   weight-only (W4A16, W8A16)     format pack-quantized: P.weight_packed (int32 [out,
//                                  ceil(in * bits / 32)]: value + 2^(bits-1) at bit bits * i of
//                                  the little-endian words along the input dimension),
//                                  P.weight_scale as above, P.weight_shape (int64 [2]).
// Weights are symmetric (the zero point is 0, not stored). Quantized embeddings stay float with
// their dequantized values (vLLM quantizes Linear layers only): exactly the integer model's rows.
// Linear layers left float are listed in `ignore`.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "compression/exports/hf_export.h"

namespace sculpt::compression {

struct CtExport {
  std::string scheme;                      // "W8A8", "W4A16", ...; "mixed" for several
  nlohmann::json quantization_config;      // what config.json says
  std::vector<std::string> quantized;      // checkpoint module names written quantized
  std::vector<std::string> ignore;         // Linear modules left float
  std::vector<std::string> float_layers;   // other quantized layers kept float (embeddings), why
  std::vector<std::string> warnings;       // what loads in transformers but not everywhere
  nlohmann::json sparsity;                 // n:m structure found in the quantized weights, or null
  nlohmann::json bytes;                    // file and quantized-Linear byte counts
  nlohmann::json verify;                   // the read-back check (null without it)
};

// `model`: the run's integer model (quant::load_quantized applied, so every raw weight holds the
// dequantized grid values); `hx`: what write_hf_export wrote into `out` for it from `source` with
// `head`; `quantized_dir`: the run's <run>/quantized. Rewrites out/model.safetensors and
// out/config.json. With `verify`, reads the written tensors back, dequantizes them as
// compressed-tensors does and requires them equal to the integer model's (exactly). UserError
// naming the layer for a layer the format cannot express (GPT-2's Conv1D, asymmetric weights).
CtExport write_ct_export(models::Model& model, const HfExport& hx, const models::hf::Arch& source,
                         models::hf::Head head, const std::filesystem::path& quantized_dir,
                         const std::filesystem::path& out, bool verify);

}  // namespace sculpt::compression
