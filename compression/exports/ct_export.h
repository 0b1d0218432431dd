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
// Per quantized embedding (nn.Embedding, weights only): format naive-quantized, P.weight (int8 grid
// values, one byte each at any bit width) and P.weight_scale as above, in a config group of its
// own (targets ["Embedding"] on llama-family models, whose one nn.Embedding is the token table;
// module names elsewhere). Not pack-quantized (half the bytes at 4 bits, what llm-compressor's
// embedding recipes write): transformers 5.25 cannot load an nn.Embedding without a `weight`
// (PreTrainedModel._init_weights reads it: "'Embedding' object has no attribute 'weight'").
// A token table tied to the LM head (tie_word_embeddings) stays float with its dequantized rows
// (exactly the integer model's): transformers shares one weight between the two modules and
// compressed-tensors would replace it by packed tensors the head cannot read.
// Weights are symmetric (the zero point is 0, not stored). Linear layers left float are listed in
// `ignore`. 2:4-sparse weights are stored dense (no sparse format loads any more: ct_export.cpp).
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "compression/exports/hf_export.h"

namespace sculpt::compression {

struct CtExport {
  std::string scheme;                      // Linear layers: "W8A8", "W4A16", ...; "mixed"
  std::string embedding_scheme;            // quantized embeddings: "W8A16", ...; "" when none
  nlohmann::json quantization_config;      // what config.json says
  std::vector<std::string> quantized;      // checkpoint module names written quantized
  std::vector<std::string> ignore;         // Linear modules left float
  std::vector<std::string> float_layers;   // quantized embeddings kept float, and why
  std::vector<std::string> warnings;       // what loads in transformers but not everywhere
  nlohmann::json sparsity;                 // n:m structure found in the quantized weights, or null
  nlohmann::json bytes;                    // file, quantized Linear and embedding byte counts
  nlohmann::json verify;                   // the read-back check (null without it)
};

// `model`: the run's model (its float layers materialized; the quantized layers are read from
// `quantized_dir`, the integer model need not be loaded); `hx`: what write_hf_export wrote into
// `out` for it from `source` with
// `head`, called with write_weights false (its float tensors in hx.weights, taken from there);
// `quantized_dir`: the run's <run>/quantized. Writes out/model.safetensors once and rewrites
// out/config.json. With `verify`, reads the written tensors back, dequantizes them as
// compressed-tensors does and requires them equal to the integer model's weights (the grids of
// `quantized_dir` dequantized as quant::load_quantized does them), exactly. UserError
// naming the layer for a layer the format cannot express (GPT-2's Conv1D, asymmetric weights).
CtExport write_ct_export(models::Model& model, HfExport& hx, const models::hf::Arch& source,
                         models::hf::Head head, const std::filesystem::path& quantized_dir,
                         const std::filesystem::path& out, bool verify);

}  // namespace sculpt::compression
