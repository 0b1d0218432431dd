#include "compression/exports/export.h"

#include <torch/torch.h>

#include <filesystem>

#include "compression/exports/ct_export.h"
#include "compression/exports/hf_export.h"
#include "compression/passes/quantize/int8_model.h"
#include "core/config/config.h"
#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/safetensors.h"
#include "core/logging/logging.h"
#include "core/nn/layers.h"
#include "trainers/run_parts.h"

namespace sculpt::compression {

namespace fs = std::filesystem;

const std::vector<std::string>& export_formats() {
  static const std::vector<std::string> f = {"hf", "compressed-tensors"};
  return f;
}

namespace {

std::string listed(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

models::hf::Head head_of(const models::hf::HfOptions& o, const models::hf::Arch& a) {
  if (o.head == "causal_lm") return models::hf::Head::causal_lm;
  if (o.head == "masked_lm") return models::hf::Head::masked_lm;
  if (o.head == "classify") return models::hf::Head::classify;
  if (o.head == "seq2seq_lm") return models::hf::Head::seq2seq_lm;
  return a.head;
}

// What the model reads, for a runtime that does not know Sculpt.
nlohmann::json inputs_of(const data::DataSpec& spec, const models::hf::Arch& a) {
  if (a.family == "vit")
    return {{{"name", "pixel_values"}, {"dtype", "float32"},
             {"shape", {"batch", spec.input_shape.at(0), spec.input_shape.at(1), spec.input_shape.at(2)}}}};
  nlohmann::json ids = {{"name", "input_ids"}, {"dtype", "int64"}, {"shape", {"batch", "sequence"}},
                        {"padding", "attention_mask 0 (in Sculpt: a negative id)"}};
  if (a.family == "t5")
    return {ids, {{"name", "decoder_input_ids"}, {"dtype", "int64"}, {"shape", {"batch", "sequence"}},
                  {"starts_with", a.decoder_start_id}}};
  return {ids, {{"name", "attention_mask"}, {"dtype", "int64"}, {"shape", {"batch", "sequence"}}}};
}

}  // namespace

nlohmann::json export_run(const ExportRequest& r) {
  const auto& formats = export_formats();
  SCULPT_CHECK(std::find(formats.begin(), formats.end(), r.format) != formats.end(),
               "export: unknown format '", r.format, "'; formats: ", listed(formats));
  const fs::path run = r.run_dir;
  SCULPT_CHECK(fs::exists(run / "config.yaml"), "export: ", run.string(),
               ": no config.yaml (not a Sculpt run folder)");
  const fs::path weights = run / "model.safetensors";
  SCULPT_CHECK(fs::exists(weights), "export: ", run.string(),
               ": no model.safetensors (train the run first)");
  const fs::path out = r.out.empty() ? run / ("export-" + r.format) : fs::path(r.out);
  SCULPT_CHECK(!fs::exists(out) || r.force, "export: ", out.string(),
               " exists (--force replaces it)");

  auto cfg = config::Config::load((run / "config.yaml").string());
  SCULPT_CHECK(cfg.model.name == "hf", "export --format ", r.format, ": the run's model is ",
               cfg.model.name, "; the Hugging Face layout is written for models that came from a "
               "checkpoint folder (model.name: hf)");
  // compressed-tensors stores the run's integer model: its quantize pass's <run>/quantized.
  const bool ct = r.format == "compressed-tensors";
  const fs::path quantized = run / "quantized";
  if (ct) {
    std::vector<std::string> passes;
    for (const auto& p : cfg.compression) passes.push_back(p.name);
    SCULPT_CHECK(std::find(passes.begin(), passes.end(), "quantize") != passes.end(),
                 "export --format compressed-tensors needs a run with a quantize pass (weight_bits 8 "
                 "or 4; act_bits 8 for W8A8, 0 for W4A16); this run's compression: [",
                 listed(passes), "]");
    SCULPT_CHECK(fs::exists(quantized / "manifest.json"), "export --format compressed-tensors: ",
                 quantized.string(), " does not exist (the quantize pass writes it when training "
                 "ends; export: false turns it off)");
  }
  auto parts = trainers::build_run_parts(cfg, c10::Device(c10::kCPU));
  auto& model = *parts.model;
  model.load_state_tensors(io::load_safetensors(weights.string()), weights.string());
  for (auto& [name, layer] : nn::compressible_layers(model)) layer->materialize();
  // The integer model: every tensor from <run>/quantized, quantized weights dequantized.
  if (ct) quant::load_quantized(model, quantized.string());
  model.eval();

  const auto& o = dynamic_cast<const models::hf::HfOptions&>(*cfg.model.options);
  const models::hf::Arch source = models::hf::read_arch(o.path);
  const models::hf::Head head = head_of(o, source);
  const data::DataSpec& spec = parts.all->spec();
  const data::Dataset& rows = parts.split.val.size() > 0 ? parts.split.val : parts.split.train;
  const at::Tensor sample =
      rows.input_rows(at::arange(std::min<int64_t>(4, rows.size()), at::kLong));

  nlohmann::json info;
  io::replace_dir_atomic(out.string(), [&](const fs::path& tmp) {
    const HfExport hx = write_hf_export(model, source, head, spec.num_classes, tmp);
    info = {{"format", r.format},
            {"run", fs::absolute(run).string()},
            {"source_checkpoint", source.dir},
            {"architecture", models::hf::architecture_name(hx.arch, head)},
            {"tensors", hx.tensors},
            {"copied", hx.copied},
            {"inputs", inputs_of(spec, source)}};
    if (ct) {
      const CtExport cx = write_ct_export(model, hx, source, head, quantized, tmp, r.verify);
      info["quantized_from"] = fs::absolute(quantized).string();
      info["scheme"] = cx.scheme;
      info["quantization_format"] = cx.quantization_config.at("format");
      info["quantized_layers"] = cx.quantized;
      info["ignore"] = cx.ignore;
      info["float_layers"] = cx.float_layers;
      info["warnings"] = cx.warnings;
      info["sparsity"] = cx.sparsity;
      info["bytes"] = cx.bytes;
      if (r.verify) info["verify"] = cx.verify;
    } else if (r.verify) {
      torch::NoGradGuard no_grad;
      auto again = models::hf::load_pretrained(models::hf::read_arch(tmp.string()), spec,
                                               models::hf::LoadOptions{head});
      again->eval();
      const double diff = (again->forward(sample) - model.forward(sample)).abs().max().item<double>();
      info["verify"] = {{"rows", sample.size(0)}, {"max_abs_diff", diff}, {"tolerance", 1e-4},
                        {"how", "the export read back by Sculpt's Hugging Face loader against "
                                "the run's model, on the first validation rows"}};
      SCULPT_CHECK(diff <= 1e-4, "export: verification failed: the exported model's outputs differ "
                   "from the run's by ", diff, " (tolerance 1e-4); nothing was written");
    }
    io::write_file_atomic((tmp / "export.json").string(), info.dump(2) + "\n");
  });
  log::info("export: ", out.string(), " (", r.format, ")");
  return info;
}

}  // namespace sculpt::compression
