// compressed-tensors (the `compressed-tensors` package, 0.20.1) out of the Hugging Face layout:
// the quantized Linear weights of the run's integer model replaced by the package's tensors
// (ct_export.h), config.json's quantization_config naming the schemes as the package's
// QuantizationConfig / QuantizationScheme / QuantizationArgs serialize them.
#include "compression/exports/ct_export.h"

#include <ATen/ATen.h>

#include <chrono>
#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "compression/export_dir.h"
#include "compression/exports/quantized_grid.h"
#include "compression/passes/quantize/qparams.h"
#include "compression/passes/quantize/qparams.h"
#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/safetensors.h"
#include "core/logging/logging.h"
#include "core/nn/layers.h"

namespace sculpt::compression {

namespace fs = std::filesystem;
using models::hf::Head;
using quant::Granularity;
using quant::QSpec;

namespace {

constexpr const char* kVersion = "0.20.1";  // the compressed-tensors release whose names these are

// compressed-tensors' pack_to_int32 layout: value + 2^(bits-1) at bit bits * i of row r's
// little-endian int32 words, i along the input dimension; a value may straddle two words.
at::Tensor pack_int32(const at::Tensor& q, int bits) {
  const at::Tensor src = q.to(at::kInt).contiguous();
  const int64_t rows = src.size(0), cols = src.size(1), words = (cols * bits + 31) / 32;
  at::Tensor out = at::zeros({rows, words}, at::kInt);
  const int32_t* in = src.data_ptr<int32_t>();
  auto* dst = reinterpret_cast<uint32_t*>(out.data_ptr<int32_t>());
  const int32_t offset = 1 << (bits - 1);
  for (int64_t r = 0; r < rows; ++r) {
    uint32_t* row = dst + r * words;
    for (int64_t c = 0; c < cols; ++c) {
      const auto u = static_cast<uint32_t>(in[r * cols + c] + offset);
      const int64_t bit = c * bits, w = bit / 32, off = bit % 32;
      row[w] |= u << off;
      if (off + bits > 32) row[w + 1] |= u >> (32 - off);
    }
  }
  return out;
}

at::Tensor unpack_int32(const at::Tensor& packed, int bits, int64_t cols) {
  const at::Tensor src = packed.to(at::kInt).contiguous();
  const int64_t rows = src.size(0), words = src.size(1);
  at::Tensor out = at::empty({rows, cols}, at::kInt);
  const auto* in = reinterpret_cast<const uint32_t*>(src.data_ptr<int32_t>());
  int32_t* dst = out.data_ptr<int32_t>();
  const uint32_t mask = (1u << bits) - 1;
  for (int64_t r = 0; r < rows; ++r) {
    const uint32_t* row = in + r * words;
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t bit = c * bits, w = bit / 32, off = bit % 32;
      uint32_t u = row[w] >> off;
      if (off + bits > 32) u |= row[w + 1] << (32 - off);
      dst[r * cols + c] = static_cast<int32_t>(u & mask) - (1 << (bits - 1));
    }
  }
  return out;
}

// compressed-tensors' dequantize of a symmetric weight: x_q.to(scale.dtype) * scale, per group
// on the [rows, groups, group_size] view.
at::Tensor dequantize_ct(const at::Tensor& q, const at::Tensor& scale, int64_t group_size) {
  const at::Tensor x = q.to(scale.scalar_type());
  if (group_size <= 0) return x * scale;
  return (x.unflatten(-1, {x.size(-1) / group_size, group_size}) * scale.unsqueeze(-1))
      .flatten(-2);
}

// QuantizationArgs as compressed-tensors 0.20.1 serializes them (model_dump).
nlohmann::json args_json(int bits, bool symmetric, const std::string& strategy,
                         int64_t group_size, bool dynamic) {
  return {{"num_bits", bits},
          {"type", "int"},
          {"symmetric", symmetric},
          {"group_size", group_size > 0 ? nlohmann::json(group_size) : nlohmann::json()},
          {"strategy", strategy},
          {"dynamic", dynamic}};
}

int64_t nbytes(const at::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }

struct Layer {
  std::string name, module;  // Sculpt's layer, the checkpoint's module
  bool embedding = false;    // an nn.Embedding (weights only), else an nn.Linear
  std::string format;        // int-quantized | pack-quantized | naive-quantized
  int bits = 8;
  int64_t group_size = 0;    // > 0: per group
  at::Tensor q, scale;       // grid values [out, in]; compressed-tensors' scale layout
  at::Tensor reference;      // the integer model's weight: Sculpt's dequantization of q
  at::Tensor input_scale, input_zero_point;  // undefined: float input / symmetric input
  nlohmann::json weights, input;
};

}  // namespace

CtExport write_ct_export(models::Model& model, HfExport& hx, const models::hf::Arch& source,
                         Head head, const fs::path& quantized_dir, const fs::path& out,
                         bool verify) {
  at::NoGradGuard no_grad;
  const auto t0 = std::chrono::steady_clock::now();
  auto since = [&t0] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  ExportReader reader(quantized_dir.string(), "sculpt-quantized",
                      "a quantize pass (export: true) writes <run>/quantized when training ends");
  const nlohmann::json& manifest = reader.manifest();
  const auto map = models::hf::weight_map(hx.arch, head, models::hf::checkpoint_base(source));
  auto module_of = [&](const std::string& layer) -> const models::hf::Source* {
    auto it = map.find(layer + ".weight");
    return it == map.end() ? nullptr : &it->second;
  };
  auto strip = [](const std::string& tensor) { return tensor.substr(0, tensor.rfind('.')); };
  std::map<std::string, std::shared_ptr<nn::Compressible>> layers;
  for (auto& [n, l] : nn::compressible_layers(model)) layers[n] = l;
  const models::hf::Source* lm = module_of("head.lm");
  const std::string tied_head = hx.arch.tied && lm ? strip(lm->name) : "";
  // A token table the LM head reads (tie_word_embeddings): one weight in transformers for both.
  const bool table_tied = hx.arch.tied && head != Head::classify;

  CtExport r;
  std::vector<Layer> quantized;
  std::map<std::string, at::Tensor> float_rows;  // quantized embeddings written float
  for (const auto& [name, j] : manifest.at("layers").items()) {
    const std::string where = "export compressed-tensors: layer " + name;
    const std::string kind = j.at("kind").get<std::string>();
    const QSpec w = quantized_spec(j.at("weight"), quantized_dir.string() + ": layer " + name);
    const models::hf::Source* src = module_of(name);
    const auto shape = j.at("shape").get<std::vector<int64_t>>();
    if (kind == "embedding") {
      // Weight-only quantized embeddings (compressed-tensors 0.20 compresses nn.Embedding as
      // well as nn.Linear); written float (the integer model's dequantized rows) where the
      // format cannot say it.
      std::string why;
      if (!src || src->transpose || src->parts != 1 || shape.size() != 2)
        why = "not a plain nn.Embedding table in the checkpoint";
      else if (table_tied && name == "embed.tokens")
        why = "the token table is tied to the LM head (tie_word_embeddings): transformers keeps "
              "one weight for both, and compressed-tensors replaces the embedding's weight by its "
              "packed tensors, which the LM head cannot read";
      else if (!w.symmetric || !w.is_signed)
        why = w.describe() + " weights; the packed format written here is symmetric";
      else if (w.granularity == Granularity::per_channel && w.axis != 0)
        why = "one scale per column (weight_axis: 1); compressed-tensors' channel strategy has one "
              "per row";
      if (!why.empty()) {
        r.float_layers.push_back(name + ": an embedding written float with its dequantized rows "
                                        "(the integer model's values): " + why);
        if (src) {  // the integer model's rows, as load_quantized dequantizes them
          quant::QParams qp{w, reader.take(name + ".w_scale").to(at::kFloat), at::Tensor()};
          qp.zero_point = w.symmetric ? at::zeros_like(qp.scale)
                                      : reader.take(name + ".w_zero_point").to(at::kFloat);
          float_rows[src->name] = quant::dequantize(read_grid(reader, name, j, qp), qp, shape);
        }
        continue;
      }
    } else {
      SCULPT_CHECK(kind == "linear", where, " is a quantized ", kind,
                   "; compressed-tensors stores quantized Linear and Embedding layers only (leave "
                   "it out of the quantize pass: exclude: ['", name, "'])");
      SCULPT_CHECK(src, where, " has no place in a ", hx.arch.model_type, " checkpoint");
      SCULPT_CHECK(!src->transpose && src->parts == 1, where, " is ", src->name,
                   " in the checkpoint, a transformers Conv1D (its weight stored [in, out]",
                   src->parts > 1 ? ", query, key and value in one" : "",
                   "); compressed-tensors quantizes nn.Linear modules only (export --format hf "
                   "writes this run's float model)");
      SCULPT_CHECK(tied_head.empty() || strip(src->name) != tied_head, where, " is ", src->name,
                   ", tied to the token table (tie_word_embeddings); a tied head cannot be stored "
                   "quantized apart from the table (leave it out of the quantize pass)");
      SCULPT_CHECK(w.symmetric && w.is_signed, where, ": ", w.describe(),
                   " weights; the schemes written here (W8A8, W4A16, ...) have symmetric weights "
                   "(vLLM's int8 kernels take symmetric weights only): quantize with "
                   "weight_scheme: symmetric");
      SCULPT_CHECK(shape.size() == 2, where, ": weight of ", shape.size(), " dimensions");
    }
    Layer l;
    l.name = name;
    l.module = strip(src->name);
    l.embedding = kind == "embedding";
    l.bits = w.bits;
    std::string strategy;
    at::Tensor scale = reader.take(name + ".w_scale").to(at::kFloat).contiguous();
    if (w.granularity == Granularity::per_tensor) {
      strategy = "tensor";
      l.scale = scale.reshape({1});
    } else if (w.granularity == Granularity::per_channel) {
      SCULPT_CHECK(w.axis == 0, where, ": one scale per input channel (weight_axis: ", w.axis,
                   "); compressed-tensors' channel strategy has one per output row "
                   "(weight_axis: 0)");
      strategy = "channel";
      l.scale = scale.reshape({shape[0], 1});
    } else {
      SCULPT_CHECK(shape[1] % w.group_size == 0, where, ": ", shape[1],
                   " inputs are not a whole number of groups of ", w.group_size);
      strategy = "group";
      l.group_size = w.group_size;
      l.scale = scale.reshape({shape[0], shape[1] / w.group_size});
    }
    l.weights = args_json(w.bits, true, strategy, l.group_size, false);
    const quant::QParams qp{w, scale, at::zeros_like(scale)};
    l.q = read_grid(reader, name, j, qp);
    if (verify) l.reference = quant::dequantize(l.q, qp, shape);
    if (!l.embedding && !j.at("act").is_null()) {
      // Sculpt's input quantization, static and per tensor: a signed grid is symmetric (zero
      // point 0); an unsigned one 0..2^b-1 with zero point z is compressed-tensors' asymmetric
      // grid -2^(b-1)..2^(b-1)-1 with zero point z - 2^(b-1), the same values.
      const QSpec a = quantized_spec(j.at("act"), quantized_dir.string() + ": layer " + name);
      const bool symmetric = a.qmin() < 0;
      l.input = args_json(a.bits, symmetric, "tensor", 0, false);
      l.input_scale = reader.take(name + ".a_scale").to(at::kFloat).reshape({1});
      const at::Tensor zp = reader.take(name + ".a_zero_point").to(at::kInt).reshape({1});
      if (symmetric)
        SCULPT_CHECK(zp.item<int32_t>() == 0, where, ": a signed input grid with zero point ",
                     zp.item<int32_t>());
      else
        l.input_zero_point = (zp - (1 << (a.bits - 1))).to(at::kChar);
      l.format = "int-quantized";
    } else if (l.embedding) {
      // Weights only. At 8 bits naive-quantized: the module keeps its `weight` (int8 grid
      // values). At 4 bits or fewer pack-quantized, as the Linear layers: transformers 5.25 loads
      // a packed nn.Embedding only by decompressing the model (quantization_config.dequantize,
      // set below); loaded compressed, PreTrainedModel._init_weights reads module.weight and
      // from_pretrained fails with "'Embedding' object has no attribute 'weight'".
      l.format = l.bits <= 4 ? "pack-quantized" : "naive-quantized";
    } else {
      l.format = "pack-quantized";
    }
    quantized.push_back(std::move(l));
  }
  SCULPT_CHECK(!quantized.empty(), "export compressed-tensors: the run's quantize pass left no "
               "layer this format can store quantized (", manifest.at("layers").size(),
               " quantized layers: ", r.float_layers.empty() ? "none" : r.float_layers.front(),
               ")");
  log::debug("export compressed-tensors: integer layers read ", since(), " s");

  // The float tensors of the Hugging Face layout (in memory), the quantized layers' weights and
  // biases replaced, written once.
  std::map<std::string, at::Tensor> tensors;
  for (auto& [n, t] : hx.weights) tensors[n] = std::move(t);
  hx.weights.clear();
  for (auto& [n, t] : float_rows) tensors.at(n) = t;
  int64_t q_bytes = 0, fp32_bytes = 0, e_bytes = 0, e_fp32 = 0;
  // one config group per scheme, Linear and Embedding modules apart
  std::map<std::string, std::vector<const Layer*>> by_scheme;
  for (const auto& l : quantized) {
    const std::string p = l.module + ".";
    SCULPT_ASSERT(tensors.erase(p + "weight") == 1, p + "weight");
    std::vector<std::pair<std::string, at::Tensor>> add;
    if (l.format != "pack-quantized") {
      add.emplace_back(p + "weight", l.q.to(at::kChar).contiguous());
    } else {
      add.emplace_back(p + "weight_packed", pack_int32(l.q, l.bits));
      add.emplace_back(p + "weight_shape", at::tensor(l.q.sizes().vec(), at::kLong));
    }
    add.emplace_back(p + "weight_scale", l.scale);
    if (l.input_scale.defined()) add.emplace_back(p + "input_scale", l.input_scale);
    if (l.input_zero_point.defined()) add.emplace_back(p + "input_zero_point", l.input_zero_point);
    for (auto& [n, t] : add) {
      (l.embedding ? e_bytes : q_bytes) += nbytes(t);
      tensors[n] = t;
    }
    (l.embedding ? e_fp32 : fp32_bytes) += l.q.numel() * 4;
    // the integer model's bias (a folded norm already in it)
    const auto bias = map.find(l.name + ".bias");
    if (reader.has(l.name + ".bias_q") && bias != map.end())
      tensors[bias->second.name] = reader.take(l.name + ".bias_q").to(at::kFloat).contiguous();
    // Linear groups first ("0"), then embeddings ("1")
    by_scheme[std::string(l.embedding ? "1" : "0") + l.format + l.weights.dump() + l.input.dump()]
        .push_back(&l);
    r.quantized.push_back(l.module);
  }
  const fs::path weights = out / "model.safetensors";
  {
    io::NamedTensors written(tensors.begin(), tensors.end());
    tensors.clear();
    io::save_safetensors(weights.string(), written, {{"format", "pt"}});
  }
  log::debug("export compressed-tensors: model.safetensors written ", since(), " s");

  // Linear modules left float: every mapped Linear of the model that was not written quantized,
  // and the LM head (tied to the token table or not quantized).
  std::set<std::string> done(r.quantized.begin(), r.quantized.end()), ignore;
  for (const auto& [name, layer] : layers) {
    const models::hf::Source* src = module_of(name);
    if (dynamic_cast<const nn::Linear*>(layer.get()) && src && !src->transpose &&
        src->parts == 1 && !done.count(strip(src->name)))
      ignore.insert(strip(src->name));
  }
  if (lm && !lm->transpose && !done.count(strip(lm->name))) ignore.insert(strip(lm->name));
  r.ignore.assign(ignore.begin(), ignore.end());
  if (lm && done.count(strip(lm->name))) {
    r.warnings.push_back(strip(lm->name) + " is written quantized (the run quantized head.lm): "
                         "transformers reads it, but vLLM builds its LM head as an embedding that "
                         "reads a float weight (llm-compressor leaves lm_head in ignore); for "
                         "vLLM leave it out of the quantize pass (exclude: ['head\\.lm'])");
    log::warn("export compressed-tensors: ", r.warnings.back());
  }

  // quantization_config, as compressed-tensors' ModelCompressor.update_config writes it.
  int linear_groups = 0, embedding_groups = 0;
  for (const auto& [key, list] : by_scheme) (key[0] == '1' ? embedding_groups : linear_groups)++;
  nlohmann::json groups = nlohmann::json::object();
  std::set<std::string> formats;
  int gi = 0;
  for (const auto& [key, list] : by_scheme) {
    const Layer& l = *list.front();
    nlohmann::json targets = nlohmann::json::array();
    if (!l.embedding && linear_groups == 1) {
      targets.push_back("Linear");
    } else if (l.embedding && embedding_groups == 1 && hx.arch.family == "llama") {
      // The class name, as llm-compressor's embedding recipes target it (vLLM matches it on
      // every model; a module name needs the model to pass its prefix on): a llama-family
      // model's one nn.Embedding is its token table, quantized here.
      targets.push_back("Embedding");
    } else {
      for (const Layer* x : list) targets.push_back(x->module);
    }
    groups["group_" + std::to_string(gi++)] = {{"targets", targets},
                                               {"weights", l.weights},
                                               {"input_activations", l.input},
                                               {"output_activations", nullptr},
                                               {"format", l.format}};
    formats.insert(l.format);
    const std::string scheme =
        "W" + std::to_string(l.bits) + "A" +
        (l.input.is_null() ? std::string("16") : std::to_string(l.input.at("num_bits").get<int>()));
    std::string& into = l.embedding ? r.embedding_scheme : r.scheme;
    into = into.empty() ? scheme : into == scheme ? scheme : "mixed";
  }
  if (r.scheme.empty()) r.scheme = "none (embeddings only)";
  r.quantization_config = {
      {"config_groups", groups},
      {"format", formats.size() == 1 ? *formats.begin() : std::string("mixed-precision")},
      {"global_compression_ratio", nullptr},
      {"ignore", r.ignore},
      {"kv_cache_scheme", nullptr},
      {"moe_sparsity_config", nullptr},
      {"quant_method", "compressed-tensors"},
      {"quantization_status", "compressed"},
      {"sparsity_config", nlohmann::json::object()},
      {"transform_config", nlohmann::json::object()},
      {"version", kVersion}};
  const bool packed_table = std::any_of(quantized.begin(), quantized.end(), [](const Layer& l) {
    return l.embedding && l.format == "pack-quantized";
  });
  if (packed_table) {
    // transformers' CompressedTensorsConfig(dequantize=True), read from config.json: the packed
    // token table (and every other layer) is decompressed to float at load time.
    r.quantization_config["dequantize"] = true;
    r.warnings.push_back(
        "the token table is pack-quantized (" + r.embedding_scheme + "): transformers loads the "
        "folder decompressed (quantization_config.dequantize: true), every layer float in memory, "
        "and vLLM has no packed embedding; for compressed Linear layers in memory, quantize the "
        "token table at 8 bits or leave it out of the quantize pass (exclude: ['embed.*'])");
    log::warn("export compressed-tensors: ", r.warnings.back());
  }
  nlohmann::json cfg = io::read_json_file((out / "config.json").string());
  cfg["quantization_config"] = r.quantization_config;
  io::write_file_atomic((out / "config.json").string(), cfg.dump(2) + "\n");

  // 2:4 structure: kept in the values, stored dense. compressed-tensors 0.20.1 has no
  // sparse-24-bitmask compressor any more (ModelCompressor.from_compression_config refuses a
  // Sparse24 config, update_config writes an empty sparsity_config) and vLLM dropped its
  // CompressedTensors24 scheme (vllm-project/vllm#36799: "Sparse24 models are no longer
  // supported"): a bitmask-compressed folder would load in neither.
  int64_t two_four = 0, sparse_bytes = 0, sparse_fp32 = 0;
  for (const auto& l : quantized) {
    const int64_t k = l.q.size(1);
    if (l.embedding || k % 4 != 0 || !l.q.ne(0).any().item<bool>() ||
        !l.q.reshape({l.q.size(0), k / 4, 4}).ne(0).sum(-1).le(2).all().item<bool>())
      continue;
    ++two_four;
    sparse_fp32 += l.q.numel() * 4;
    sparse_bytes += l.q.numel() * l.bits / 8;
  }
  if (two_four > 0)
    r.sparsity = {{"structure", "2:4"},
                  {"layers", two_four},
                  {"stored", "dense: the zeros are in the quantized values"},
                  {"dense_bytes", sparse_bytes},
                  {"sparse_24_bitmask_bytes", sparse_bytes / 2 + sparse_fp32 / 4 / 8},
                  {"why", "compressed-tensors 0.20.1 and transformers 5 no longer read a "
                          "sparse-24-bitmask sparsity_config (the package dropped its sparse "
                          "compressors after 0.14), and vLLM removed its Sparse24 scheme "
                          "(vllm-project/vllm#36799); a bitmask folder (sparse_24_bitmask_bytes "
                          "for these layers) would load in neither"}};

  r.bytes = {{"file", static_cast<int64_t>(fs::file_size(weights))},
             {"quantized_linear", q_bytes},
             {"quantized_linear_fp32", fp32_bytes},
             {"quantized_linear_ratio",
              static_cast<double>(q_bytes) / static_cast<double>(std::max<int64_t>(1, fp32_bytes))},
             {"quantized_embedding", e_bytes},
             {"quantized_embedding_fp32", e_fp32}};

  if (verify) {
    // The written tensors read back and dequantized as compressed-tensors does, against the
    // integer model's weights (the grids of <run>/quantized dequantized as load_quantized does).
    std::map<std::string, at::Tensor> back;
    for (auto& [n, t] : io::load_safetensors(weights.string())) back[n] = t;
    auto get = [&](const std::string& n) {
      auto it = back.find(n);
      SCULPT_CHECK(it != back.end(), "export compressed-tensors: verification: ", weights.string(),
                   " has no ", n, "; nothing was written");
      return it->second;
    };
    double worst = 0;
    for (const auto& l : quantized) {
      const std::string p = l.module + ".";
      const at::Tensor& ref = l.reference;
      const at::Tensor q =
          l.format != "pack-quantized"
              ? get(p + "weight")
              : unpack_int32(get(p + "weight_packed"), l.bits, get(p + "weight_shape")[1].item<int64_t>());
      const at::Tensor deq = dequantize_ct(q, get(p + "weight_scale"), l.group_size);
      SCULPT_CHECK(deq.sizes() == ref.sizes(), "export compressed-tensors: verification: ", p,
                   "weight reads back as ", deq.sizes(), ", the model's is ", ref.sizes(),
                   "; nothing was written");
      if (!deq.equal(ref)) {
        const double d = (deq - ref).abs().max().item<double>();
        worst = std::max(worst, d);
        SCULPT_CHECK(d == 0, "export compressed-tensors: verification failed: ", p,
                     "weight dequantized differs from the integer model's layer ", l.name, " by ",
                     d, "; nothing was written");
      }
      if (l.input_scale.defined())
        SCULPT_CHECK(get(p + "input_scale").equal(l.input_scale) &&
                         (!l.input_zero_point.defined() ||
                          get(p + "input_zero_point").equal(l.input_zero_point)),
                     "export compressed-tensors: verification failed: ", p,
                     "input_scale / input_zero_point do not read back; nothing was written");
    }
    r.verify = {{"layers", static_cast<int64_t>(quantized.size())},
                {"max_abs_diff", worst},
                {"tolerance", 0},
                {"how", "the written tensors read back, unpacked and dequantized as "
                        "compressed-tensors does (q * weight_scale), against the run's integer "
                        "model's weights (<run>/quantized dequantized as Sculpt's integer model "
                        "does, quant::dequantize); input scales and zero points read back equal"}};
    log::debug("export compressed-tensors: read back and checked ", since(), " s");
  }
  log::info("export compressed-tensors: ", quantized.size(), " layers quantized (Linear ",
            r.scheme, ", embeddings ", r.embedding_scheme.empty() ? "float" : r.embedding_scheme,
            "; ", r.quantization_config["format"].get<std::string>(), "), ", r.ignore.size(),
            " Linear float; quantized Linear weights ", q_bytes, " bytes (fp32 ", fp32_bytes,
            "), embeddings ", e_bytes, " (fp32 ", e_fp32, ")");
  return r;
}

}  // namespace sculpt::compression
