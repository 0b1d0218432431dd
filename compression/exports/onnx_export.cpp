// `sculpt export --format onnx` (onnx_export.h): the graph built by the families' writers
// (onnx_emitter.h, onnx_families.cpp), written by libsculpt_onnx_writer.so (onnx_writer.h: the only
// code that touches protobuf).
#include "compression/exports/onnx_export.h"

#include <dlfcn.h>

#include "compression/exports/onnx_emitter.h"
#include "compression/exports/onnx_writer.h"
#include "core/error.h"

namespace sculpt::compression {

namespace fs = std::filesystem;
using namespace onnx_graph;

namespace {

// libsculpt_onnx_writer.so (onnx_writer.h), beside this library, loaded on first use with its
// own protobuf bound to itself first (RTLD_DEEPBIND).
using WriteFn = int64_t (*)(void*, const char*, char*, size_t);
WriteFn onnx_writer() {
  static WriteFn fn = nullptr;
  if (fn) return fn;
  std::vector<std::string> paths;
  Dl_info self{};
  if (dladdr(reinterpret_cast<void*>(&onnx_writer), &self) && self.dli_fname)
    paths.push_back((fs::path(self.dli_fname).parent_path() / "libsculpt_onnx_writer.so").string());
  paths.push_back("libsculpt_onnx_writer.so");
  std::string errors;
  for (const auto& p : paths) {
    if (p.find('/') != std::string::npos && !fs::exists(p)) continue;
    void* h = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!h) {
      errors += std::string(dlerror()) + "; ";
      continue;
    }
    fn = reinterpret_cast<WriteFn>(dlsym(h, "sculpt_onnx_write"));
    if (fn) return fn;
    errors += p + ": no sculpt_onnx_write; ";
  }
  throw UserError("export onnx: cannot load the ONNX writer libsculpt_onnx_writer.so (it needs "
                  "Debian's libonnx1 and libprotobuf32): " + errors);
}

nlohmann::json dims_json(const std::vector<std::string>& dims) {
  nlohmann::json shape = nlohmann::json::array();
  for (const auto& d : dims) {
    if (d.find_first_not_of("0123456789") == std::string::npos) shape.push_back(std::stoll(d));
    else shape.push_back(d);
  }
  return shape;
}

}  // namespace

io::NamedTensors onnx_feeds(const config::Config& cfg, const data::DataSpec& spec, const at::Tensor& input) {
  const Kind k = kind_of(cfg, spec, nullptr);
  auto ids = [](const at::Tensor& t) { return t.clamp_min(0).to(at::kLong).contiguous(); };
  auto mask = [](const at::Tensor& t) { return (t >= 0).to(at::kLong).contiguous(); };
  switch (k) {
    case Kind::dense: return {{"input", input.to(at::kFloat).contiguous()}};
    case Kind::hf_vit: return {{"pixel_values", input.to(at::kFloat).contiguous()}};
    case Kind::tokens: return {{"input_ids", input.to(at::kLong).contiguous()}};
    case Kind::hf_text: return {{"input_ids", ids(input)}, {"attention_mask", mask(input)}};
    case Kind::seq2seq: {
      const int64_t s = spec.source_len;
      return {{"input_ids", input.narrow(1, 0, s).to(at::kLong).contiguous()},
              {"decoder_input_ids", input.narrow(1, s, input.size(1) - s).to(at::kLong).contiguous()}};
    }
    case Kind::hf_t5: {
      const int64_t s = spec.source_len;
      const at::Tensor src = input.narrow(1, 0, s), dec = input.narrow(1, s, input.size(1) - s);
      return {{"input_ids", ids(src)}, {"attention_mask", mask(src)}, {"decoder_input_ids", ids(dec)}};
    }
  }
  return {};
}

OnnxExport write_onnx_export(models::Model& model, const config::Config& cfg, const data::DataSpec& spec,
                             const std::string& quantized_dir, const fs::path& file) {
  torch::NoGradGuard no_grad;
  Emitter e(model, read_quantized(quantized_dir));
  std::vector<std::string> out_dims;
  emit_model(e, cfg, spec, &out_dims);
  auto& gb = e.gb;
  gb.g.outputs.push_back(onnxw::Value{"logits", onnxw::kFloat, out_dims});
  const std::string mname = model.name();
  gb.g.name = mname;
  gb.g.doc = "Sculpt export of " + mname;
  gb.g.metadata["sculpt.model"] = mname;
  gb.g.metadata["sculpt.quantized"] = quantized_dir.empty() ? "false" : "true";

  OnnxExport r;
  r.nodes = static_cast<int64_t>(gb.g.nodes.size());
  r.initializers = static_cast<int64_t>(gb.g.initializers.size());
  r.parameters = gb.parameters;
  for (const auto& v : gb.g.inputs)
    r.inputs.push_back({{"name", v.name},
                        {"dtype", v.dtype == onnxw::kFloat ? "float32" : "int64"},
                        {"shape", dims_json(v.dims)}});
  r.outputs.push_back({{"name", "logits"}, {"dtype", "float32"}, {"shape", dims_json(out_dims)}});
  r.quantized = e.quantized;
  r.float_layers = e.float_layers;
  r.space_to_depth = e.space_to_depth;
  r.quant_step = quantized_dir.empty() ? 0.0 : e.quant_step();
  char error[1024] = {0};
  r.bytes = onnx_writer()(&gb.g, file.string().c_str(), error, sizeof error);
  SCULPT_CHECK(r.bytes >= 0, "export onnx: ", error);
  return r;
}

}  // namespace sculpt::compression
