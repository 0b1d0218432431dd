// The ONNX writer of `sculpt export --format onnx` (export.h): the run's model walked block by
// block and written as ONNX (opset 17) nodes from each layer's actual weights, so a pruned,
// physically smaller model goes out smaller. Families: mlp, lenet5, resnet, transformer_encoder
// (tokens or image patches), transformer_lm, transformer_seq2seq, and the Hugging Face families
// (gpt2, llama/qwen2/mistral, bert/roberta, t5, vit).
//
//   inputs   images/features: `input` [batch, C, H, W] float32 (ViT: `pixel_values`), already
//            normalized as the dataset did (export.json says how);
//            built-in text models: `input_ids` [batch, sequence] int64 (the dataset's pad id 0 is
//            padding for transformer_encoder); transformer_seq2seq: `input_ids` [batch, S] and
//            `decoder_input_ids` [batch, decoder_sequence];
//            Hugging Face text: `input_ids` + `attention_mask` [batch, sequence] int64 (0: padding),
//            T5 also `decoder_input_ids` [batch, decoder_sequence] (teacher forcing: one forward
//            over the whole decoder input, logits for every decoder position).
//   output   `logits`: [batch, classes] or [batch, sequence, vocab].
// Batch and sequence axes are symbolic. Causal and padding masks, rotary positions, grouped-query
// attention, RMSNorm (composed), the GELU variants (Erf or Tanh formula), T5's relative position
// bias (the table's values for relative distances -D..D precomputed with Sculpt's own bucketing,
// D = relative_attention_max_distance, beyond which the bucket no longer changes, gathered in the
// graph: any length works) are nodes of the graph.
//
// Small quantized convolutions (fewer than 16 input channels) followed by ReLU and a 2x2 max-pool,
// as in LeNet-5, are written in space-to-depth form (onnx_families.cpp): the same integer
// products on SpaceToDepth(b) of the input with b^2 times the channels, the pool a max over
// output phases, so that ONNX Runtime's int8 convolution kernels beat its float ones on them;
// export.json lists them under `space_to_depth`.
// Quantized (a run with a quantize pass, `quantized` set): the run's integer model
// (<run>/quantized) as QDQ: int8 (uint8 for unsigned grids) weight initializers with their
// per-channel (axis) or per-tensor scales into DequantizeLinear, each quantized input through
// QuantizeLinear/DequantizeLinear with the trained per-tensor scale and zero point, int32 biases
// at the input scale x weight scale, and the next layer's input Q/DQ repeated after a layer's
// output and through ReLU / max-pooling / flatten (exact: quantization commutes with them), so
// ONNX Runtime fuses QLinearConv / QGemm / QLinearMatMul. Weights of fewer than 8 bits are stored
// as int8 holding their grid values (exact); grids narrower than the 8-bit storage get a Clip
// before QuantizeLinear. Per-group weights (opset 17's DequantizeLinear has no blocks) go out
// as float, the integer model's dequantized values, listed in `float_layers`.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/config/config.h"
#include "core/io/safetensors.h"
#include "core/models/model.h"

namespace sculpt::compression {

struct OnnxExport {
  nlohmann::json inputs, outputs;          // export.json's description
  std::vector<std::string> quantized;      // layers written as QDQ
  std::vector<std::string> float_layers;   // quantized layers kept float, and why
  std::vector<std::string> space_to_depth; // quantized convolutions written in space-to-depth form
  int64_t bytes = 0, nodes = 0, initializers = 0, parameters = 0;
  // Quantized: the output's change when the last quantized layer's input moves by one
  // quantization step (its input scale x the largest row sum of |weight|); 0 for float models.
  double quant_step = 0;
};

// Writes `file` (model.onnx) for `model` built from `cfg` for data `spec`: its float layers
// materialized; with `quantized_dir`, the quantized layers' grids, scales and biases are read
// from there (the integer model need not be loaded: quant::load_quantized applied or not, the
// graph is the same). UserError naming the layer and why for a layer ONNX cannot express.
OnnxExport write_onnx_export(models::Model& model, const config::Config& cfg,
                             const data::DataSpec& spec, const std::string& quantized_dir,
                             const std::filesystem::path& file);

// The ONNX inputs (name -> tensor) that correspond to one of Sculpt's input batches of `cfg`'s
// model (token ids < 0: attention_mask 0; seq2seq rows split into source and decoder input).
io::NamedTensors onnx_feeds(const config::Config& cfg, const data::DataSpec& spec,
                            const at::Tensor& input);

// The Python interpreter that verifies exports: $SCULPT_PYTHON, $SCULPT_DEPS_DIR/venv,
// ~/.cache/sculpt/venv; "" when none exists.
std::string verify_python();

// onnx.checker (full check) and ONNX Runtime (CPU) on `feeds`, compared with `expected`:
// {"checker": "ok", "max_abs_diff", "argmax_agreement", "rows", ...}. Throws UserError when no
// Python with onnx and onnxruntime is found (naming what to install or set), std::runtime_error
// when the checker or the runtime fails. The same in steps: start_onnx_check starts the Python
// process (files under `scratch`; it imports its packages, then waits) and returns at once,
// submit_onnx_check gives it the model and the inputs, finish_onnx_check waits for it and
// compares; abandon_onnx_check stops one that will not be finished (an error in between).
struct OnnxCheck {
  int pid = -1;
  std::string python;
  std::filesystem::path scratch, outputs, log;
};
OnnxCheck start_onnx_check(const std::filesystem::path& scratch);
void submit_onnx_check(OnnxCheck& check, const std::filesystem::path& model, const io::NamedTensors& feeds);
nlohmann::json finish_onnx_check(OnnxCheck& check, const at::Tensor& expected);
void abandon_onnx_check(OnnxCheck& check);
nlohmann::json run_onnx_check(const std::filesystem::path& model, const io::NamedTensors& feeds,
                              const at::Tensor& expected, const std::filesystem::path& scratch);

}  // namespace sculpt::compression
