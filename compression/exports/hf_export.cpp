// The Hugging Face layout of a run whose model came from a checkpoint folder: the same
// architecture and tensor names as the source (the name map of core/models/hf/ read backwards),
// config.json updated for what compression removed, the tokenizer and generation files copied.
#include "compression/exports/hf_export.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/safetensors.h"
#include "core/nn/layers.h"

namespace sculpt::compression {

namespace fs = std::filesystem;
using models::hf::Arch;
using models::hf::Head;

namespace {

int64_t rows(const io::NamedTensors& state, const std::string& name) {
  for (const auto& [n, t] : state)
    if (n == name) return t.size(0);
  return -1;
}

// One size every layer of a stack must share (config.json has one key for it).
int64_t uniform(const io::NamedTensors& state, const std::string& stack, int64_t layers,
                const std::string& tensor, int64_t divisor, const std::string& what,
                const std::string& key) {
  int64_t first = -1;
  for (int64_t i = 0; i < layers; ++i) {
    const std::string name = stack + std::to_string(i) + ".layer." + tensor;
    const int64_t n = rows(state, name);
    SCULPT_CHECK(n >= 0, "export hf: the model has no ", name);
    if (first < 0) first = n;
    SCULPT_CHECK(n == first, "export hf: ", stack, i, " has ", n / divisor, " ", what, " but ",
                 stack, "0 has ", first / divisor, "; config.json has one ", key,
                 " for every layer: prune with `uniform: true` (compression: - name: prune, "
                 "uniform: true) to remove the same number in every layer");
  }
  return first / divisor;
}

int64_t count_blocks(const models::Model& m, const std::string& prefix) {
  int64_t n = 0;
  for (const auto& b : m.block_names())
    if (b.rfind(prefix, 0) == 0 && b.size() > prefix.size() &&
        std::isdigit(static_cast<unsigned char>(b[prefix.size()])))
      ++n;
  return n;
}

}  // namespace

HfExport write_hf_export(models::Model& model, const Arch& source, Head head, int64_t classes,
                         const fs::path& out, bool write_weights) {
  const io::NamedTensors state = model.state_tensors();
  Arch a = source;
  const bool t5 = a.family == "t5";
  const std::string stack = t5 ? "enc" : "layer";
  a.layers = count_blocks(model, stack);
  if (t5) a.decoder_layers = count_blocks(model, "dec");
  if (head == Head::classify) a.num_labels = classes;
  // What compression changed: feed-forward neurons, heads (query and key/value).
  a.ff = uniform(state, stack, a.layers, "fc1.weight", 1, "feed-forward neurons", "intermediate size");
  const int64_t heads = uniform(state, stack, a.layers, "self_attn.q.weight", a.head_dim, "heads",
                                "num_attention_heads");
  const int64_t kv = uniform(state, stack, a.layers, "self_attn.k.weight", a.head_dim,
                             "key/value heads", "num_key_value_heads");
  if (t5) {
    SCULPT_CHECK(uniform(state, "dec", a.decoder_layers, "fc1.weight", 1, "feed-forward neurons",
                         "d_ff") == a.ff,
                 "export hf: t5's encoder and decoder layers have different feed-forward widths; "
                 "config.json has one d_ff");
    SCULPT_CHECK(heads == a.heads && uniform(state, "dec", a.decoder_layers, "self_attn.q.weight",
                                             a.head_dim, "heads", "num_heads") == a.heads,
                 "export hf: t5 layers with heads removed cannot be written: the relative-position "
                 "table is shared by every layer of a stack and config.json has one num_heads");
  }
  if (heads != a.heads && (a.family == "gpt2" || a.family == "bert" || a.family == "vit"))
    throw UserError("export hf: layer0.layer.self_attn has " + std::to_string(heads) + " of " +
                    std::to_string(a.heads) + " heads; a " + a.model_type +
                    " config.json cannot describe fewer heads (its head size is the hidden size / "
                    "the head count); export a model pruned without head removal");
  a.heads = heads;
  a.kv_heads = kv;

  // Sculpt's tensors under the checkpoint's names; GPT-2's q, k, v join into c_attn.
  const auto map = models::hf::weight_map(a, head, models::hf::checkpoint_base(source));
  std::map<std::string, std::vector<std::pair<int64_t, at::Tensor>>> parts;
  std::map<std::string, models::hf::Source> how;
  for (const auto& [name, t] : state) {
    if (name == models::Model::kResizedKey ||
        (name.size() > 11 && name.compare(name.size() - 11, 11, ".head_index") == 0))
      continue;
    auto it = map.find(name);
    SCULPT_CHECK(it != map.end(), "export hf: ", name, " has no place in a ", a.model_type,
                 " checkpoint (a tensor a pass added that the Hugging Face layout cannot hold)");
    at::Tensor v = t.detach().to(at::kCPU).to(at::kFloat);
    if (it->second.transpose) v = v.t();
    parts[it->second.name].emplace_back(it->second.part, v.is_contiguous() ? v : v.contiguous());
    how[it->second.name] = it->second;
  }
  io::NamedTensors tensors;
  for (auto& [name, list] : parts) {
    std::sort(list.begin(), list.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
    std::vector<at::Tensor> ts;
    for (auto& [i, t] : list) ts.push_back(t);
    SCULPT_ASSERT(static_cast<int64_t>(ts.size()) == how[name].parts, name);
    tensors.emplace_back(name, ts.size() == 1 ? ts[0] : at::cat(ts, how[name].dim).contiguous());
  }
  if (write_weights) io::save_safetensors((out / "model.safetensors").string(), tensors, {{"format", "pt"}});

  // config.json: the source's, with the sizes that changed.
  nlohmann::json cfg = io::read_json_file(source.file);
  auto set = [&](const char* key, int64_t v) { cfg[key] = v; };
  if (a.family == "gpt2") {
    set("n_layer", a.layers);
    if (a.ff != 4 * a.hidden || cfg.contains("n_inner")) cfg["n_inner"] = a.ff;
  } else if (a.family == "llama") {
    set("num_hidden_layers", a.layers);
    set("intermediate_size", a.ff);
    set("num_attention_heads", a.heads);
    set("num_key_value_heads", a.kv_heads);
    set("head_dim", a.head_dim);
  } else if (t5) {
    set("num_layers", a.layers);
    set("num_decoder_layers", a.decoder_layers);
    set("d_ff", a.ff);
  } else {
    set("num_hidden_layers", a.layers);
    set("intermediate_size", a.ff);
  }
  // Per-layer lists (Qwen2's layer_types) keep the kept layers' entries.
  for (const char* key : {"layer_types"})
    if (cfg.contains(key) && cfg[key].is_array() && cfg[key].size() > static_cast<size_t>(a.layers)) {
      nlohmann::json kept = nlohmann::json::array();
      for (int64_t i = 0; i < a.layers; ++i) kept.push_back(cfg[key][static_cast<size_t>(i)]);
      cfg[key] = kept;
    }
  if (head == Head::classify) {
    nlohmann::json id2label = nlohmann::json::object(), label2id = nlohmann::json::object();
    for (int64_t i = 0; i < a.num_labels; ++i) {
      id2label[std::to_string(i)] = "LABEL_" + std::to_string(i);
      label2id["LABEL_" + std::to_string(i)] = i;
    }
    if (!cfg.contains("id2label") || cfg["id2label"].size() != static_cast<size_t>(a.num_labels)) {
      cfg["id2label"] = id2label;
      cfg["label2id"] = label2id;
    }
  }
  cfg["architectures"] = {models::hf::architecture_name(a, head)};
  if (cfg.contains("torch_dtype")) cfg["torch_dtype"] = "float32";
  if (cfg.contains("dtype")) cfg["dtype"] = "float32";
  io::write_file_atomic((out / "config.json").string(), cfg.dump(2) + "\n");

  HfExport r;
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                        "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "tokenizer.model",
                        "added_tokens.json", "generation_config.json", "preprocessor_config.json"}) {
    const fs::path from = fs::path(source.dir) / f;
    if (fs::exists(from)) {
      fs::copy_file(from, out / f, fs::copy_options::overwrite_existing);
      r.copied.push_back(f);
    }
  }
  r.arch = a;
  r.tensors = static_cast<int64_t>(tensors.size());
  if (!write_weights) r.weights = std::move(tensors);
  return r;
}

}  // namespace sculpt::compression
