// Hugging Face checkpoints as Sculpt models (`model.name: hf`, `model.path: DIR`): config.json
// and model.safetensors (or its sharded index) become a Model of named blocks built from the
// shared transformer layers (core/models/layers_transformer.h), so every pass, the pipeline and
// DDP apply. docs/models.md lists the families and how names map.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "core/config/section.h"
#include "core/models/hf/hf_config.h"
#include "core/models/model.h"

namespace sculpt::models::hf {

struct HfOptions : config::Section {
  std::string path;              // the checkpoint folder
  std::string dtype = "float32";  // float32 | bfloat16
  std::string head = "auto";      // auto (the checkpoint's) | causal_lm | masked_lm | classify | seq2seq_lm
  bool fresh_head = false;        // start the head from random weights (e.g. other classes)
  int64_t layers = 0;             // keep the first N layers (a shallower student); 0: all
  int64_t decoder_layers = 0;     // t5: keep the first N decoder layers; 0: all
  void visit(config::Visitor& v) override;
};

// Where one of Sculpt's tensors comes from in the checkpoint: a tensor by name, possibly
// transposed (GPT-2's Conv1D stores [in, out]) and/or one of `parts` equal slices along `dim`
// of the checkpoint's tensor (GPT-2's fused c_attn), taken before transposing.
struct Source {
  std::string name;
  bool transpose = false;
  int64_t part = 0, parts = 1, dim = 0;
};
using WeightMap = std::map<std::string, Source>;  // Sculpt name -> checkpoint tensor

// The checkpoint tensors of `head` on top of the trunk, as named in a checkpoint whose trunk
// tensors start with `base` ("bert.", "model.", ...).
WeightMap weight_map(const Arch& a, Head head, const std::string& base);

struct LoadOptions {
  Head head;
  bool fresh_head = false;
  at::ScalarType dtype = at::kFloat;
  int64_t layers = 0, decoder_layers = 0;  // fewer layers than the checkpoint's; 0: all
};

// Builds the model of `a` with `head` and loads the checkpoint's weights into it, shard by shard
// through memory maps. `spec` sizes what the data decides (sequence length, source length,
// classes of a fresh head) and is checked against the checkpoint. UserError naming the file and
// the tensor for missing, unused, mis-shaped or unreadable tensors.
std::unique_ptr<Model> load_pretrained(const Arch& a, const data::DataSpec& spec,
                                       const LoadOptions& o);
// The same from a folder with the checkpoint's own head.
std::unique_ptr<Model> load_pretrained(const std::string& dir, const data::DataSpec& spec);

// The prefix of the trunk's tensor names in `a`'s weights ("bert.", "model.", "transformer.",
// "vit." or ""), read from the file headers.
std::string checkpoint_base(const Arch& a);
// The Hugging Face class name of `a`'s family with `head` (config.json's architectures).
std::string architecture_name(const Arch& a, Head head);

// A folder that holds a Hugging Face checkpoint (config.json, no Sculpt config.yaml).
bool is_checkpoint_dir(const std::string& path);

// The model of `a` with random weights (the loader fills them).
std::unique_ptr<Model> build(const Arch& a, Head head, const data::DataSpec& spec);

void add_hf_models(ModelRegistry& r);

}  // namespace sculpt::models::hf
