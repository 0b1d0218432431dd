// How Sculpt's tensor names map to a Hugging Face checkpoint's, and loading the checkpoint:
// model.safetensors or model.safetensors.index.json with its shards, each memory-mapped and
// copied tensor by tensor into the model (pages released after each copy).
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <optional>
#include <set>

#include "core/error.h"
#include "core/io/safetensors.h"
#include "core/logging/logging.h"
#include "core/models/hf/hf_model.h"
#include "core/nn/init_scope.h"

namespace sculpt::models::hf {

namespace {

struct MapBuilder {
  WeightMap m;
  void tensor(const std::string& ours, const std::string& theirs, bool transpose = false,
              int64_t part = 0, int64_t parts = 1, int64_t dim = 0) {
    m[ours] = Source{theirs, transpose, part, parts, dim};
  }
  void linear(const std::string& ours, const std::string& theirs, bool transpose = false) {
    tensor(ours + ".weight", theirs + ".weight", transpose);
    tensor(ours + ".bias", theirs + ".bias");
  }
  void norm(const std::string& ours, const std::string& theirs) {
    tensor(ours + ".weight", theirs + ".weight");
    tensor(ours + ".bias", theirs + ".bias");
  }
};

// Hugging Face names of one layer's parts, relative to the layer's prefix.
struct LayerNames {
  std::string ln1, q, k, v, o, ln_cross, cq, ck, cv, co, ln2, fc1, gate, fc2;
};

void map_layer(MapBuilder& b, const std::string& ours, const std::string& theirs,
               const LayerNames& n) {
  const std::string l = ours + ".layer.";
  b.norm(l + "ln1", theirs + n.ln1);
  b.linear(l + "self_attn.q", theirs + n.q);
  b.linear(l + "self_attn.k", theirs + n.k);
  b.linear(l + "self_attn.v", theirs + n.v);
  b.linear(l + "self_attn.o", theirs + n.o);
  if (!n.cq.empty()) {
    b.norm(l + "ln_cross", theirs + n.ln_cross);
    b.linear(l + "cross_attn.q", theirs + n.cq);
    b.linear(l + "cross_attn.k", theirs + n.ck);
    b.linear(l + "cross_attn.v", theirs + n.cv);
    b.linear(l + "cross_attn.o", theirs + n.co);
  }
  b.norm(l + "ln2", theirs + n.ln2);
  b.linear(l + "fc1", theirs + n.fc1);
  if (!n.gate.empty()) b.linear(l + "gate", theirs + n.gate);
  b.linear(l + "fc2", theirs + n.fc2);
}

}  // namespace

WeightMap weight_map(const Arch& a, Head head, const std::string& base) {
  MapBuilder b;
  const std::string& p = base;
  auto layer = [](int64_t i) { return "layer" + std::to_string(i); };
  if (a.family == "gpt2") {
    b.tensor("embed.tokens.weight", p + "wte.weight");
    b.tensor("embed.positions", p + "wpe.weight");
    for (int64_t i = 0; i < a.layers; ++i) {
      const std::string h = p + "h." + std::to_string(i) + ".", l = layer(i) + ".layer.";
      b.norm(l + "ln1", h + "ln_1");
      b.norm(l + "ln2", h + "ln_2");
      const char* qkv[] = {"q", "k", "v"};
      for (int64_t j = 0; j < 3; ++j) {
        b.tensor(l + "self_attn." + qkv[j] + ".weight", h + "attn.c_attn.weight", true, j, 3, 1);
        b.tensor(l + "self_attn." + qkv[j] + ".bias", h + "attn.c_attn.bias", false, j, 3, 0);
      }
      b.linear(l + "self_attn.o", h + "attn.c_proj", true);
      b.linear(l + "fc1", h + "mlp.c_fc", true);
      b.linear(l + "fc2", h + "mlp.c_proj", true);
    }
    b.norm("head.norm", p + "ln_f");
    b.tensor("head.lm.weight", "lm_head.weight");
  } else if (a.family == "llama") {
    b.tensor("embed.tokens.weight", p + "embed_tokens.weight");
    const LayerNames n{"input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                       "self_attn.o_proj", "", "", "", "", "", "post_attention_layernorm",
                       "mlp.up_proj", "mlp.gate_proj", "mlp.down_proj"};
    for (int64_t i = 0; i < a.layers; ++i)
      map_layer(b, layer(i), p + "layers." + std::to_string(i) + ".", n);
    b.norm("head.norm", p + "norm");
    b.tensor("head.lm.weight", "lm_head.weight");
  } else if (a.family == "bert") {
    b.tensor("embed.tokens.weight", p + "embeddings.word_embeddings.weight");
    b.tensor("embed.positions", p + "embeddings.position_embeddings.weight");
    b.tensor("embed.token_types", p + "embeddings.token_type_embeddings.weight");
    b.norm("embed.norm", p + "embeddings.LayerNorm");
    const LayerNames n{"attention.output.LayerNorm", "attention.self.query", "attention.self.key",
                       "attention.self.value", "attention.output.dense", "", "", "", "", "",
                       "output.LayerNorm", "intermediate.dense", "", "output.dense"};
    for (int64_t i = 0; i < a.layers; ++i)
      map_layer(b, layer(i), p + "encoder.layer." + std::to_string(i) + ".", n);
    const bool roberta = a.roberta_positions;
    if (head == Head::masked_lm) {
      const std::string h = roberta ? "lm_head." : "cls.predictions.";
      b.linear("head.transform", h + (roberta ? "dense" : "transform.dense"));
      b.norm("head.norm", h + (roberta ? "layer_norm" : "transform.LayerNorm"));
      b.tensor("head.bias", h + "bias");
      b.tensor("head.lm.weight", h + "decoder.weight");
    } else {
      b.linear("head.pool", roberta ? "classifier.dense" : p + "pooler.dense");
      b.linear("head.fc", roberta ? "classifier.out_proj" : "classifier");
    }
  } else if (a.family == "t5") {
    b.tensor("embed.tokens.weight", "shared.weight");
    const LayerNames enc{"layer.0.layer_norm", "layer.0.SelfAttention.q", "layer.0.SelfAttention.k",
                         "layer.0.SelfAttention.v", "layer.0.SelfAttention.o", "", "", "", "", "",
                         "layer.1.layer_norm",
                         a.gated ? "layer.1.DenseReluDense.wi_1" : "layer.1.DenseReluDense.wi",
                         a.gated ? "layer.1.DenseReluDense.wi_0" : "", "layer.1.DenseReluDense.wo"};
    for (int64_t i = 0; i < a.layers; ++i)
      map_layer(b, "enc" + std::to_string(i), "encoder.block." + std::to_string(i) + ".", enc);
    b.tensor("enc0.rel.table.weight",
             "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
    b.norm("enc_norm.norm", "encoder.final_layer_norm");
    const LayerNames dec{"layer.0.layer_norm", "layer.0.SelfAttention.q", "layer.0.SelfAttention.k",
                         "layer.0.SelfAttention.v", "layer.0.SelfAttention.o", "layer.1.layer_norm",
                         "layer.1.EncDecAttention.q", "layer.1.EncDecAttention.k",
                         "layer.1.EncDecAttention.v", "layer.1.EncDecAttention.o", "layer.2.layer_norm",
                         a.gated ? "layer.2.DenseReluDense.wi_1" : "layer.2.DenseReluDense.wi",
                         a.gated ? "layer.2.DenseReluDense.wi_0" : "", "layer.2.DenseReluDense.wo"};
    for (int64_t i = 0; i < a.decoder_layers; ++i)
      map_layer(b, "dec" + std::to_string(i), "decoder.block." + std::to_string(i) + ".", dec);
    b.tensor("dec0.rel.table.weight",
             "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
    b.norm("head.norm", "decoder.final_layer_norm");
    b.tensor("head.lm.weight", "lm_head.weight");
  } else {  // vit
    b.linear("embed.proj", p + "embeddings.patch_embeddings.projection");
    b.tensor("embed.cls", p + "embeddings.cls_token");
    b.tensor("embed.positions", p + "embeddings.position_embeddings");
    const LayerNames n{"layernorm_before", "attention.attention.query", "attention.attention.key",
                       "attention.attention.value", "attention.output.dense", "", "", "", "", "",
                       "layernorm_after", "intermediate.dense", "", "output.dense"};
    for (int64_t i = 0; i < a.layers; ++i)
      map_layer(b, layer(i), p + "encoder.layer." + std::to_string(i) + ".", n);
    b.norm("head.norm", p + "layernorm");
    b.linear("head.fc", "classifier");
  }
  return b.m;
}

namespace {

namespace fs = std::filesystem;

// The checkpoint's tensors: name -> the mapped shard that holds it.
struct Checkpoint {
  std::vector<std::unique_ptr<io::MappedSafetensors>> shards;
  std::map<std::string, std::pair<const io::MappedSafetensors*, const io::TensorEntry*>> tensors;
};

Checkpoint open_checkpoint(const std::string& dir) {
  Checkpoint c;
  const fs::path single = fs::path(dir) / "model.safetensors";
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  std::vector<std::string> files;
  std::map<std::string, std::string> expected;  // tensor -> shard file, from the index
  if (fs::exists(single)) {
    files.push_back(single.string());
  } else if (fs::exists(index)) {
    std::ifstream in(index);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const std::exception& e) {
      throw UserError(index.string() + ": not valid JSON: " + e.what());
    }
    SCULPT_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
                 index.string(), ": key 'weight_map' is missing or not an object");
    std::set<std::string> seen;
    for (const auto& [name, file] : j["weight_map"].items()) {
      SCULPT_CHECK(file.is_string(), index.string(), ": weight_map['", name, "'] is not a file name");
      const std::string f = file.get<std::string>();
      SCULPT_CHECK(f.find('/') == std::string::npos && f != ".." && !f.empty(), index.string(),
                   ": weight_map['", name, "'] names '", f, "', which is not a file in ", dir);
      expected[name] = f;
      if (seen.insert(f).second) {
        SCULPT_CHECK(fs::exists(fs::path(dir) / f), index.string(), ": names the shard '", f,
                     "' (for tensor '", name, "'), which does not exist in ", dir);
        files.push_back((fs::path(dir) / f).string());
      }
    }
  } else {
    throw UserError(dir + ": no weights: neither model.safetensors nor model.safetensors.index.json "
                    "(pytorch_model.bin is not read; save with safe_serialization=True)");
  }
  for (const auto& f : files) {
    c.shards.push_back(std::make_unique<io::MappedSafetensors>(f));
    const auto& shard = *c.shards.back();
    for (const auto& e : shard.header().tensors) c.tensors[e.name] = {&shard, &e};
  }
  for (const auto& [name, file] : expected) {
    auto it = c.tensors.find(name);
    SCULPT_CHECK(it != c.tensors.end() && fs::path(it->second.first->path()).filename() == file,
                 index.string(), ": tensor '", name, "' is listed in shard '", file,
                 "' but that shard does not hold it");
  }
  return c;
}

std::string trunk_base(const Arch& a, const Checkpoint& c) {
  struct Probe {
    const char* family;
    const char* base;
    const char* name;
  };
  static const Probe probes[] = {
      {"gpt2", "transformer.", "wte.weight"},        {"gpt2", "", "wte.weight"},
      {"llama", "model.", "embed_tokens.weight"},    {"llama", "", "embed_tokens.weight"},
      {"bert", "bert.", "embeddings.word_embeddings.weight"},
      {"bert", "roberta.", "embeddings.word_embeddings.weight"},
      {"bert", "", "embeddings.word_embeddings.weight"},
      {"vit", "vit.", "embeddings.cls_token"},       {"vit", "", "embeddings.cls_token"},
      {"t5", "", "shared.weight"}};
  for (const auto& pr : probes)
    if (a.family == pr.family && c.tensors.count(std::string(pr.base) + pr.name)) return pr.base;
  return "";
}

std::string first_names(const std::vector<std::string>& names) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < 5; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > 5) s += ", ... (" + std::to_string(names.size()) + " in all)";
  return s;
}

std::string shape_text(at::IntArrayRef s) {
  std::string t = "[";
  for (size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + "]";
}

// Tensors a checkpoint may hold that no model parameter reads: buffers older files saved,
// aliases of the token table.
bool ignorable(const std::string& name) {
  auto ends = [&](const char* s) {
    const std::string t(s);
    return name.size() >= t.size() && name.compare(name.size() - t.size(), t.size(), t) == 0;
  };
  return ends(".attn.bias") || ends(".attn.masked_bias") || ends("rotary_emb.inv_freq") ||
         ends("position_ids") || name == "encoder.embed_tokens.weight" ||
         name == "decoder.embed_tokens.weight";
}

// dest <- v, a view of `e` in `shard`. A plain view (rows in file order) is copied in slices of
// rows, each slice's pages released as soon as it is copied, so the largest tensor (a token
// table) never sits in memory twice; other views are copied whole, then released.
void copy_released(at::Tensor& dest, const at::Tensor& v, const io::MappedSafetensors& shard,
                   const io::TensorEntry& e, bool plain) {
  constexpr int64_t kSlice = 8 << 20;  // bytes
  const int64_t bytes = e.end - e.begin;
  if (!plain || v.dim() == 0 || bytes <= kSlice) {
    dest.copy_(v);
    shard.release(e);
    return;
  }
  const int64_t rows = v.size(0), row_bytes = bytes / rows;
  const int64_t step = std::max<int64_t>(1, kSlice / std::max<int64_t>(1, row_bytes));
  for (int64_t r = 0; r < rows; r += step) {
    const int64_t n = std::min(step, rows - r);
    dest.narrow(0, r, n).copy_(v.narrow(0, r, n));
    shard.release(e, r * row_bytes, (r + n) * row_bytes);
  }
}

}  // namespace

std::string checkpoint_base(const Arch& a) { return trunk_base(a, open_checkpoint(a.dir)); }

std::string architecture_name(const Arch& a, Head head) {
  const std::string& t = a.model_type;
  if (t == "gpt2") return "GPT2LMHeadModel";
  if (t == "llama") return "LlamaForCausalLM";
  if (t == "qwen2") return "Qwen2ForCausalLM";
  if (t == "mistral") return "MistralForCausalLM";
  if (t == "t5") return "T5ForConditionalGeneration";
  if (t == "vit") return "ViTForImageClassification";
  const std::string stem = t == "roberta" ? "Roberta" : "Bert";
  return stem + (head == Head::classify ? "ForSequenceClassification" : "ForMaskedLM");
}

bool is_checkpoint_dir(const std::string& path) {
  return fs::is_directory(path) && fs::exists(fs::path(path) / "config.json") &&
         !fs::exists(fs::path(path) / "config.yaml");
}

std::unique_ptr<Model> load_pretrained(const Arch& full, const data::DataSpec& spec,
                                       const LoadOptions& o) {
  Arch a = full;
  auto fewer = [&](int64_t want, int64_t& have, const char* key) {
    if (want <= 0) return;
    SCULPT_CHECK(want <= have, "model hf: ", key, ": ", want, " but the checkpoint (", a.file,
                 ") has ", have);
    have = want;
  };
  fewer(o.layers, a.layers, "layers");
  fewer(o.decoder_layers, a.decoder_layers, "decoder_layers");
  Checkpoint ckpt = open_checkpoint(a.dir);
  int64_t weight_bytes = 0;  // config.json may not declare a model larger than its weights
  for (const auto& shard : ckpt.shards) weight_bytes += static_cast<int64_t>(fs::file_size(shard->path()));
  check_declared_size(a, weight_bytes);
  const std::string base = trunk_base(a, ckpt);
  const bool fresh_head = o.fresh_head || o.head != a.head;
  // Every parameter is read from the checkpoint below (a missing one is an error), except a
  // fresh head's: only then is the random init worth drawing.
  auto model = [&] {
    std::optional<nn::SkipRandomInit> skip;
    if (!fresh_head) skip.emplace();
    return build(a, o.head, spec);
  }();
  if (o.dtype != at::kFloat) model->to(o.dtype);
  const WeightMap map = weight_map(a, o.head, base);
  std::set<std::string> used;
  if (a.layers != full.layers || a.decoder_layers != full.decoder_layers)  // the dropped layers
    for (const auto& [ours, src] : weight_map(full, o.head, base)) used.insert(src.name);
  if (fresh_head) {  // the checkpoint's own head is not read
    for (const auto& [ours, src] : weight_map(a, a.head, base))
      if (ours.rfind("head.", 0) == 0) used.insert(src.name);
  }
  if (a.tied) {  // a tied head's weight may be saved as well; the table is what is read
    used.insert("lm_head.weight");
    used.insert(a.roberta_positions ? "lm_head.decoder.weight" : "cls.predictions.decoder.weight");
  }
  std::vector<std::string> missing;
  struct Copy {
    at::Tensor dest;
    std::string ours;
    Source src;
  };
  std::map<const io::MappedSafetensors*, std::vector<Copy>> by_shard;
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : model->state_tensors()) {
    const bool head = name.rfind("head.", 0) == 0;
    if ((head && fresh_head) ||
        (name.size() > 11 && name.compare(name.size() - 11, 11, ".head_index") == 0))
      continue;  // a fresh head; Sculpt's own bookkeeping of removed heads
    auto it = map.find(name);
    SCULPT_ASSERT(it != map.end(), "no checkpoint name for ", name);
    auto found = ckpt.tensors.find(it->second.name);
    if (found == ckpt.tensors.end()) {
      missing.push_back(it->second.name);
      continue;
    }
    used.insert(it->second.name);
    by_shard[found->second.first].push_back({t, name, it->second});
  }
  SCULPT_CHECK(missing.empty(), a.dir, ": the checkpoint lacks tensors the ", a.model_type,
               " model needs: ", first_names(missing));
  std::vector<std::string> unused;
  for (const auto& [name, where] : ckpt.tensors)
    if (!used.count(name) && !ignorable(name)) unused.push_back(name);
  SCULPT_CHECK(unused.empty(), a.dir, ": the checkpoint has tensors the ", a.model_type,
               " model (as config.json describes it) does not use: ", first_names(unused));
  for (auto& [shard, copies] : by_shard) {
    for (auto& c : copies) {
      const io::TensorEntry& e = *shard->find(c.src.name);
      at::Tensor v = shard->view(e);
      SCULPT_CHECK(v.is_floating_point(), shard->path(), ": tensor '", e.name, "' has dtype ",
                   e.dtype, "; weights must be F32, F16 or BF16");
      if (c.src.parts > 1) {
        SCULPT_CHECK(v.dim() > c.src.dim && v.size(c.src.dim) % c.src.parts == 0, shard->path(),
                     ": tensor '", e.name, "' of shape ", shape_text(v.sizes()), " does not split in ",
                     c.src.parts);
        v = v.chunk(c.src.parts, c.src.dim)[c.src.part];
      }
      if (c.src.transpose) v = v.t();
      SCULPT_CHECK(v.sizes() == c.dest.sizes(), shard->path(), ": tensor '", e.name, "' has shape ",
                   shape_text(v.sizes()), " but ", c.ours, " needs ", shape_text(c.dest.sizes()),
                   " (config.json: ", a.file, ")");
      copy_released(c.dest, v, *shard, e, c.src.parts == 1 && !c.src.transpose);
    }
  }
  if (fresh_head)
    log::info("model hf: ", a.dir, ": the ", head_name(o.head), " head starts from random weights");
  return model;
}

std::unique_ptr<Model> load_pretrained(const std::string& dir, const data::DataSpec& spec) {
  Arch a = read_arch(dir);
  return load_pretrained(a, spec, LoadOptions{a.head});
}

// ---- the registry entry ----

void HfOptions::visit(config::Visitor& v) {
  v.directory("path", path, "hf: the Hugging Face checkpoint folder (config.json, model.safetensors "
              "or its index and shards)", config::Need::required);
  v.choice("dtype", dtype, {"float32", "bfloat16"}, "hf: parameter dtype");
  v.choice("head", head, {"auto", "causal_lm", "masked_lm", "classify", "seq2seq_lm"},
           "hf: task head; auto: the checkpoint's own (architectures in config.json)");
  v.field("fresh_head", fresh_head, "hf: start the head from random weights (e.g. other classes)");
  v.field("layers", layers, "hf: keep the checkpoint's first N layers (t5: encoder layers); 0: all; "
          "with model.init and init_blocks, choose which", config::Range::at_least(0));
  v.field("decoder_layers", decoder_layers, "hf: t5: keep the first N decoder layers; 0: all",
          config::Range::at_least(0));
}

void add_hf_models(ModelRegistry& r) {
  r.add(
      "hf", "a Hugging Face checkpoint folder (bert, roberta, gpt2, llama, qwen2, mistral, t5, vit)",
      [](const config::ModelConfig& c, const data::DataSpec& spec) {
        SCULPT_CHECK(c.options, "model hf: needs model.path");
        const auto& o = dynamic_cast<const HfOptions&>(*c.options);
        Arch a = read_arch(o.path);
        LoadOptions lo{a.head, o.fresh_head, o.dtype == "bfloat16" ? at::kBFloat16 : at::kFloat,
                       o.layers, o.decoder_layers};
        static const std::map<std::string, Head> heads = {{"causal_lm", Head::causal_lm},
                                                          {"masked_lm", Head::masked_lm},
                                                          {"classify", Head::classify},
                                                          {"seq2seq_lm", Head::seq2seq_lm}};
        if (o.head != "auto") lo.head = heads.at(o.head);
        if (lo.head == Head::classify && lo.head == a.head && spec.num_classes > 0 &&
            spec.num_classes != a.num_labels && !o.fresh_head)
          throw UserError("model hf: the data has " + std::to_string(spec.num_classes) +
                          " classes but the checkpoint's classifier has " +
                          std::to_string(a.num_labels) + " (id2label in " + a.file +
                          "); set model.fresh_head: true to train a new classifier");
        return load_pretrained(a, spec, lo);
      },
      [] { return std::make_shared<HfOptions>(); });
}

}  // namespace sculpt::models::hf
