#include "core/models/hf/hf_config.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>

#include "core/error.h"

namespace sculpt::models::hf {

const char* head_name(Head h) {
  switch (h) {
    case Head::causal_lm: return "causal_lm";
    case Head::masked_lm: return "masked_lm";
    case Head::classify: return "classify";
    case Head::seq2seq_lm: return "seq2seq_lm";
  }
  return "?";
}

const std::vector<std::string>& supported_model_types() {
  static const std::vector<std::string> types = {"bert",  "gpt2", "llama", "mistral",
                                                 "qwen2", "roberta", "t5",  "vit"};
  return types;
}

namespace {

using nlohmann::json;

// Typed access to config.json with errors that name the file and the key.
constexpr int64_t kMaxSize = (int64_t(1) << 31) - 1;
constexpr int64_t kMaxLabels = int64_t(1) << 17;

class Keys {
 public:
  // prefix: the parent keys of a nested object ("rope_parameters."), for the messages
  Keys(const json& j, std::string file, std::string prefix = "")
      : j_(j), file_(std::move(file)), prefix_(std::move(prefix)) {}
  bool has(const char* key) const { return j_.contains(key) && !j_.at(key).is_null(); }
  int64_t integer(const char* key) const {
    if (!has(key)) throw UserError(where(key) + " is missing");
    return integer_or(key, 0);
  }
  int64_t integer_or(const char* key, int64_t fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_number_integer())
      throw UserError(where(key) + " must be an integer, not " + v.dump());
    return v.get<int64_t>();
  }
  // Sizes are bounded so that no product of two overflows 64 bits; the model they declare
  // is checked against its weights file (check_declared_size) before anything is allocated.
  int64_t positive(const char* key, int64_t limit = kMaxSize) const {
    int64_t v = integer(key);
    if (v < 1) throw UserError(where(key) + " must be >= 1, not " + std::to_string(v));
    if (v > limit)
      throw UserError(where(key) + " is " + std::to_string(v) + ", above the limit of " +
                      std::to_string(limit));
    return v;
  }
  int64_t positive_or(const char* key, int64_t fallback) const {
    return has(key) ? positive(key) : fallback;
  }
  int64_t at_least_zero_or(const char* key, int64_t fallback) const {
    int64_t v = integer_or(key, fallback);
    if (v < 0) throw UserError(where(key) + " must be >= 0, not " + std::to_string(v));
    if (v > kMaxSize)
      throw UserError(where(key) + " is " + std::to_string(v) + ", above the limit of " +
                      std::to_string(kMaxSize));
    return v;
  }
  double number_or(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_number()) throw UserError(where(key) + " must be a number, not " + v.dump());
    return v.get<double>();
  }
  bool flag_or(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_boolean()) throw UserError(where(key) + " must be true or false, not " + v.dump());
    return v.get<bool>();
  }
  std::string text_or(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_string()) throw UserError(where(key) + " must be a string, not " + v.dump());
    return v.get<std::string>();
  }
  // A token id that may be an integer or a list (first entry); -1 when absent.
  int64_t token_or(const char* key, int64_t fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<int64_t>();
    return integer_or(key, fallback);
  }
  [[noreturn]] void fail(const std::string& key, const std::string& why) const {
    throw UserError(where(key) + ": " + why);
  }
  const json& raw() const { return j_; }
  const std::string& file() const { return file_; }

 private:
  const json& j_;
  std::string file_;
  std::string prefix_;
  std::string where(const std::string& key) const {
    return file_ + ": key '" + prefix_ + key + "'";
  }
};

Activation activation(const Keys& k, const char* key, const std::string& value) {
  static const std::map<std::string, Activation> known = {
      {"gelu", Activation::gelu},          {"gelu_new", Activation::gelu_tanh},
      {"gelu_pytorch_tanh", Activation::gelu_tanh}, {"gelu_fast", Activation::gelu_tanh},
      {"relu", Activation::relu},          {"silu", Activation::silu},
      {"swish", Activation::silu}};
  auto it = known.find(value);
  if (it == known.end())
    k.fail(key, "activation '" + value + "' is not supported; supported: gelu, gelu_new, "
                "gelu_pytorch_tanh, gelu_fast, relu, silu, swish");
  return it->second;
}

Head head_of(const std::string& arch, const std::string& family) {
  auto ends = [&](const char* s) {
    const std::string t(s);
    return arch.size() >= t.size() && arch.compare(arch.size() - t.size(), t.size(), t) == 0;
  };
  if (ends("ForMaskedLM")) return Head::masked_lm;
  if (ends("ForSequenceClassification") || ends("ForImageClassification")) return Head::classify;
  if (ends("ForConditionalGeneration")) return Head::seq2seq_lm;
  if (ends("ForCausalLM") || ends("LMHeadModel")) return Head::causal_lm;
  // A bare model (BertModel, T5Model, ...): the family's usual head, which starts fresh.
  if (family == "bert") return Head::masked_lm;
  if (family == "vit") return Head::classify;
  if (family == "t5") return Head::seq2seq_lm;
  return Head::causal_lm;
}

int64_t labels(const Keys& k) {
  if (k.has("id2label") && k.raw().at("id2label").is_object())
    return static_cast<int64_t>(k.raw().at("id2label").size());
  const int64_t n = k.integer_or("num_labels", 2);
  if (n < 1 || n > kMaxLabels)
    k.fail("num_labels", std::to_string(n) + " is not in [1, " + std::to_string(kMaxLabels) + "]");
  return n;
}

void read_rope(const Keys& k, Arch& a) {
  a.rotary.on = true;
  a.rotary.theta = k.number_or("rope_theta", 10000.0);
  // transformers 4 writes rope_scaling; 5 writes rope_parameters (with rope_theta inside).
  const char* key = k.has("rope_parameters") ? "rope_parameters" : "rope_scaling";
  if (!k.has(key)) return;
  const json& r = k.raw().at(key);
  if (!r.is_object()) k.fail(key, "must be an object, not " + r.dump());
  Keys rk(r, k.file(), std::string(key) + ".");
  a.rotary.theta = rk.number_or("rope_theta", a.rotary.theta);
  const std::string type = rk.text_or("rope_type", rk.text_or("type", "default"));
  if (type == "default") return;
  if (type != "linear" && type != "llama3")
    k.fail(key, "rope type '" + type + "' is not supported; supported: default, linear, llama3");
  a.rotary.scaling = type;
  a.rotary.factor = rk.number_or("factor", 1.0);
  a.rotary.low_freq_factor = rk.number_or("low_freq_factor", 1.0);
  a.rotary.high_freq_factor = rk.number_or("high_freq_factor", 4.0);
  a.rotary.original_max_positions = rk.positive_or("original_max_position_embeddings", 8192);
}

}  // namespace

Arch read_arch(const std::string& dir) {
  namespace fs = std::filesystem;
  Arch a;
  a.dir = dir;
  a.file = (fs::path(dir) / "config.json").string();
  SCULPT_CHECK(fs::is_directory(dir), dir, ": no such checkpoint directory (model.path)");
  std::ifstream in(a.file);
  SCULPT_CHECK(in.good(), a.file, ": missing (a Hugging Face checkpoint folder holds config.json "
               "and model.safetensors)");
  json j;
  try {
    j = json::parse(in);
  } catch (const std::exception& e) {
    throw UserError(a.file + ": not valid JSON: " + e.what());
  }
  SCULPT_CHECK(j.is_object(), a.file, ": not a JSON object");
  Keys k(j, a.file);
  a.model_type = k.text_or("model_type", "");
  SCULPT_CHECK(!a.model_type.empty(), a.file, ": key 'model_type' is missing");
  const std::string& t = a.model_type;
  if (t == "gpt2") a.family = "gpt2";
  else if (t == "llama" || t == "qwen2" || t == "mistral") a.family = "llama";
  else if (t == "bert" || t == "roberta") a.family = "bert";
  else if (t == "t5") a.family = "t5";
  else if (t == "vit") a.family = "vit";
  else {
    std::string list;
    for (const auto& s : supported_model_types()) list += (list.empty() ? "" : ", ") + s;
    throw UserError(a.file + ": model_type '" + t + "' is not supported; supported: " + list);
  }
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string())
    a.architecture = j["architectures"][0].get<std::string>();
  a.head = head_of(a.architecture, a.family);
  a.pad_id = k.token_or("pad_token_id", -1);
  a.bos_id = k.token_or("bos_token_id", -1);
  a.eos_id = k.token_or("eos_token_id", -1);

  if (a.family == "gpt2") {
    a.vocab = k.positive("vocab_size");
    a.hidden = k.positive("n_embd");
    a.layers = k.positive("n_layer");
    a.heads = k.positive("n_head");
    a.max_positions = k.positive("n_positions");
    a.ff = k.positive_or("n_inner", 4 * a.hidden);
    a.act = activation(k, "activation_function", k.text_or("activation_function", "gelu_new"));
    a.eps = k.number_or("layer_norm_epsilon", 1e-5);
    a.dropout = k.number_or("resid_pdrop", 0.1);
    a.tied = k.flag_or("tie_word_embeddings", true);
    if (!k.flag_or("scale_attn_weights", true)) k.fail("scale_attn_weights", "false is not supported");
    if (k.flag_or("scale_attn_by_inverse_layer_idx", false))
      k.fail("scale_attn_by_inverse_layer_idx", "true is not supported");
  } else if (a.family == "llama") {
    a.vocab = k.positive("vocab_size");
    a.hidden = k.positive("hidden_size");
    a.layers = k.positive("num_hidden_layers");
    a.heads = k.positive("num_attention_heads");
    a.kv_heads = k.positive_or("num_key_value_heads", a.heads);
    a.head_dim = k.positive_or("head_dim", a.hidden / a.heads);
    a.ff = k.positive("intermediate_size");
    a.max_positions = k.positive_or("max_position_embeddings", 4096);
    a.norm = NormKind::rms;
    a.eps = k.number_or("rms_norm_eps", 1e-6);
    a.act = activation(k, "hidden_act", k.text_or("hidden_act", "silu"));
    a.gated = true;
    a.tied = k.flag_or("tie_word_embeddings", false);
    const bool bias = k.flag_or("attention_bias", false);
    a.qkv_bias = t == "qwen2" ? true : bias;
    a.out_bias = t == "qwen2" ? false : bias;
    a.mlp_bias = k.flag_or("mlp_bias", false);
    a.dropout = k.number_or("attention_dropout", 0.0);
    read_rope(k, a);
    if (t == "mistral" || (t == "qwen2" && k.flag_or("use_sliding_window", false)))
      a.window = k.at_least_zero_or("sliding_window", 0);
    if (a.kv_heads < 1 || a.heads % a.kv_heads != 0)
      k.fail("num_key_value_heads", std::to_string(a.kv_heads) + " does not divide num_attention_heads " +
                                        std::to_string(a.heads));
  } else if (a.family == "bert") {
    a.vocab = k.positive("vocab_size");
    a.hidden = k.positive("hidden_size");
    a.layers = k.positive("num_hidden_layers");
    a.heads = k.positive("num_attention_heads");
    a.ff = k.positive("intermediate_size");
    a.max_positions = k.positive("max_position_embeddings");
    a.type_vocab = k.positive_or("type_vocab_size", 2);
    a.eps = k.number_or("layer_norm_eps", 1e-12);
    a.act = activation(k, "hidden_act", k.text_or("hidden_act", "gelu"));
    a.dropout = k.number_or("hidden_dropout_prob", 0.1);
    a.tied = k.flag_or("tie_word_embeddings", true);
    a.num_labels = labels(k);
    a.roberta_positions = t == "roberta";
    if (a.roberta_positions && a.pad_id < 0) a.pad_id = 1;
    const std::string pos = k.text_or("position_embedding_type", "absolute");
    if (pos != "absolute") k.fail("position_embedding_type", "'" + pos + "' is not supported; supported: absolute");
  } else if (a.family == "t5") {
    a.vocab = k.positive("vocab_size");
    a.hidden = k.positive("d_model");
    a.head_dim = k.positive("d_kv");
    a.ff = k.positive("d_ff");
    a.layers = k.positive("num_layers");
    a.decoder_layers = k.positive_or("num_decoder_layers", a.layers);
    a.heads = k.positive("num_heads");
    a.rel_buckets = k.positive_or("relative_attention_num_buckets", 32);
    a.rel_max_distance = k.positive_or("relative_attention_max_distance", 128);
    a.dropout = k.number_or("dropout_rate", 0.1);
    a.eps = k.number_or("layer_norm_epsilon", 1e-6);
    a.norm = NormKind::rms;
    a.tied = k.flag_or("tie_word_embeddings", true);
    // transformers 5 writes scale_decoder_outputs; older files scale exactly when tied.
    a.scale_lm_input = k.flag_or("scale_decoder_outputs", a.tied);
    a.qkv_bias = a.out_bias = a.mlp_bias = false;
    std::string proj = k.text_or("feed_forward_proj", "relu");
    if (proj.rfind("gated-", 0) == 0) {
      a.gated = true;
      proj = proj.substr(6);
      if (proj == "gelu") proj = "gelu_new";  // transformers' T5 maps gated-gelu to gelu_new
    }
    a.act = activation(k, "feed_forward_proj", proj);
    a.decoder_start_id = k.integer_or("decoder_start_token_id", a.pad_id >= 0 ? a.pad_id : 0);
    if (a.pad_id < 0) a.pad_id = 0;
  } else {  // vit
    a.hidden = k.positive("hidden_size");
    a.layers = k.positive("num_hidden_layers");
    a.heads = k.positive("num_attention_heads");
    a.ff = k.positive("intermediate_size");
    a.eps = k.number_or("layer_norm_eps", 1e-12);
    a.act = activation(k, "hidden_act", k.text_or("hidden_act", "gelu"));
    a.dropout = k.number_or("hidden_dropout_prob", 0.0);
    a.qkv_bias = k.flag_or("qkv_bias", true);
    a.image_size = k.positive("image_size");
    a.patch_size = k.positive("patch_size");
    a.channels = k.positive_or("num_channels", 3);
    a.num_labels = labels(k);
    if (a.image_size % a.patch_size != 0)
      k.fail("patch_size", std::to_string(a.patch_size) + " does not divide image_size " +
                               std::to_string(a.image_size));
  }
  if (a.family != "t5" && a.head_dim == 0) {
    if (a.hidden % a.heads != 0)
      k.fail("num_attention_heads", std::to_string(a.heads) + " heads do not divide the hidden size " +
                                        std::to_string(a.hidden));
    a.head_dim = a.hidden / a.heads;
  }
  if (a.kv_heads == 0) a.kv_heads = a.heads;
  return a;
}

void check_declared_size(const Arch& a, int64_t weight_bytes) {
  // A lower bound on the parameters config.json declares, 2 bytes each (F16/BF16): the token
  // table, learned positions, and per layer the query/output projections and the feed-forward.
  using Real = long double;
  const Real h = Real(a.hidden), attn = Real(a.heads) * Real(a.head_dim ? a.head_dim : 1);
  Real params = a.family == "vit" ? h * Real(a.channels) * Real(a.patch_size) * Real(a.patch_size)
                                  : Real(a.vocab) * h;
  if (a.family == "gpt2" || a.family == "bert") params += Real(a.max_positions) * h;
  const Real layer = 2 * h * attn + (a.gated ? 3 : 2) * h * Real(a.ff);
  params += layer * (Real(a.layers) + Real(a.decoder_layers));
  if (2 * params > Real(weight_bytes))
    throw UserError(a.file + ": declares a model of at least " +
                    std::to_string(static_cast<double>(params)) + " parameters (" +
                    std::to_string(static_cast<double>(2 * params)) +
                    " bytes at 2 bytes each), but its weights hold only " +
                    std::to_string(weight_bytes) + " bytes; refused");
}

}  // namespace sculpt::models::hf
