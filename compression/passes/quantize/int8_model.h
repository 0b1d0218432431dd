// The exported quantized model and the integer runtime that runs it.
//
// <dir>/model.safetensors holds, per quantized layer L: `L.qweight` (int8 grid values, or two
// 4-bit values per byte in `L.qweight_packed` for bits <= 4), `L.w_scale`, `L.w_zero_point`
// (asymmetric grids only), `L.bias_q` (with a folded BatchNorm already in it), and `L.a_scale`
// / `L.a_zero_point` when the layer's input is quantized; every other float tensor of the
// model under its own name (folded BatchNorms are left out). <dir>/manifest.json: format, per
// layer its kind, weight and activation QSpec, shapes, folded norm; sizes.
//
// Runtime: Linear and Conv2d with a quantized input and a per-tensor or per-channel (axis 0)
// weight run as int8 x int8 -> int32 GEMMs (at::_int_mm; a conv through im2col) with the
// zero-point corrections, then one float scale per output channel. Embeddings gather int8 rows
// and scale them. Anything else (per-group weights, weight-only quantization, grouped convs)
// dequantizes its weight once at load and runs in float — logged as a fallback, never silent.
#pragma once

#include <torch/nn/modules/batchnorm.h>

#include <nlohmann/json.hpp>
#include <string>

#include "compression/passes/quantize/qparams.h"
#include "core/models/model.h"
#include "core/nn/layers.h"

namespace sculpt::quant {

// One quantized layer as the exporter sees it.
struct ExportLayer {
  std::string name;
  std::shared_ptr<nn::Compressible> layer;
  QParams weight;             // qparams of the (folded) weight
  at::Tensor folded_weight;   // the float weight the grid values come from (folded when BN is)
  at::Tensor bias;            // float bias of the exported layer (folded), undefined if none
  QParams act;                // undefined when the input stays float
  std::string folded_norm;    // BatchNorm folded into this layer ("" if none)
};

// A conv followed by an eval-mode BatchNorm as one conv: w * g / sigma and
// beta + (b - mu) * g / sigma, sigma = sqrt(running_var + eps); `b` may be undefined (no bias).
std::pair<at::Tensor, at::Tensor> fold_batchnorm(const at::Tensor& w, const at::Tensor& b,
                                                 const torch::nn::BatchNorm2dImpl& bn);

// Bytes of the model's floating-point tensors stored as FP32 (the size the export compares with).
int64_t fp32_bytes(models::Model& model);

// Writes the quantized model to `dir` atomically (a temporary folder renamed into place).
// Returns the manifest it wrote.
nlohmann::json export_quantized(models::Model& model, const std::vector<ExportLayer>& layers,
                                const std::string& dir);

// Loads an export into `model` (built from the same config): float tensors are copied, each
// quantized layer gets its integer runtime, folded norms become identities. UserError naming the
// file on a missing or mismatched tensor or a manifest of another format.
nlohmann::json load_quantized(models::Model& model, const std::string& dir);

}  // namespace sculpt::quant
