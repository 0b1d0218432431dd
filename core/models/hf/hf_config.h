// A Hugging Face checkpoint's config.json, read into what Sculpt's layers need. Families:
// gpt2; llama (also qwen2, mistral); bert (also roberta); t5 (v1.0 and v1.1 / flan); vit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/models/layers_transformer.h"

namespace sculpt::models::hf {

// The task heads a checkpoint can carry.
enum class Head { causal_lm, masked_lm, classify, seq2seq_lm };
const char* head_name(Head h);

struct Arch {
  std::string dir, file;     // the checkpoint folder and its config.json
  std::string model_type;    // as written (llama, qwen2, ...)
  std::string family;        // gpt2 | llama | bert | t5 | vit
  Head head = Head::causal_lm;  // the head the checkpoint was saved with (architectures[0])
  std::string architecture;  // architectures[0], "" when absent
  int64_t vocab = 0, hidden = 0, layers = 0, decoder_layers = 0, heads = 0, kv_heads = 0,
          head_dim = 0, ff = 0, max_positions = 0, type_vocab = 0, num_labels = 0;
  NormKind norm = NormKind::layer;
  double eps = 1e-5;
  Activation act = Activation::gelu;
  bool gated = false, tied = false;
  bool scale_lm_input = false;  // t5: decoder output * d_model^-1/2 before the LM head
  bool qkv_bias = true, out_bias = true, mlp_bias = true;
  bool roberta_positions = false;  // positions count from pad_token_id + 1 (RoBERTa)
  RotarySpec rotary;
  int64_t window = 0;  // sliding-window attention (Mistral); 0: none
  int64_t rel_buckets = 32, rel_max_distance = 128;
  int64_t pad_id = -1, bos_id = -1, eos_id = -1, decoder_start_id = 0;
  double dropout = 0.0;
  int64_t image_size = 0, patch_size = 0, channels = 3;
};

// Reads DIR/config.json. UserError naming the file and the key for a missing or mistyped key, an
// unsupported model_type (with the supported list) or a setting Sculpt does not implement.
Arch read_arch(const std::string& dir);

const std::vector<std::string>& supported_model_types();

// UserError naming config.json when the model it declares needs more bytes than the checkpoint's
// weights files hold (`weight_bytes`, all shards): checked before the model is allocated.
void check_declared_size(const Arch& a, int64_t weight_bytes);

}  // namespace sculpt::models::hf
