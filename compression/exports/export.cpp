#include "compression/exports/export.h"

#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <set>
#include <unistd.h>

#include "compression/exports/ct_export.h"
#include "compression/exports/hf_export.h"
#include "compression/exports/onnx_export.h"
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
  static const std::vector<std::string> f = {"hf", "compressed-tensors", "onnx"};
  return f;
}

namespace {

// `--log-level debug` prints how long each step of an export took.
class Phases {
 public:
  void done(const char* what) {
    const auto now = std::chrono::steady_clock::now();
    log::debug("export: ", what, " ", std::chrono::duration<double>(now - last_).count(), " s");
    last_ = now;
  }

 private:
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

// Materializes the model's compressible layers (bakes their weight transforms into the weights),
// except the layers of <run>/quantized (`quantized`: its folder, "" for none) of the kinds in
// `skip` ("linear", "conv2d", "embedding"): their weights come from there (load_quantized writes
// the dequantized grid values and drops the transforms; the ONNX writer reads the grids), so
// baking them (a fake-quantization of every weight) would be thrown away.
void materialize_layers(models::Model& model, const fs::path& quantized,
                        const std::set<std::string>& skip) {
  std::set<std::string> replaced;
  if (!quantized.empty())
    for (const auto& [name, j] : io::read_json_file((quantized / "manifest.json").string()).at("layers").items())
      if (skip.count(j.value("kind", std::string())) > 0) replaced.insert(name);
  for (auto& [name, layer] : nn::compressible_layers(model))
    if (!replaced.count(name) && layer->has_transforms()) layer->materialize();
}

// An export runs single-threaded in ATen: its work is copies and elementwise passes over every
// weight, which a second OpenMP thread barely speeds up on an idle machine and slows down
// severalfold on a busy one (the threads spin at each barrier waiting for a core: a GPT-2 124M
// int8 ONNX export took 22 s with two threads and 10 s with one at load average 5 on two cores).
// The count in force before is restored.
class SingleThread {
 public:
  SingleThread() : before_(at::get_num_threads()) { at::set_num_threads(1); }
  ~SingleThread() { at::set_num_threads(before_); }
  SingleThread(const SingleThread&) = delete;
  SingleThread& operator=(const SingleThread&) = delete;

 private:
  int before_;
};

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
    return {ids, {{"name", "attention_mask"}, {"dtype", "int64"}, {"shape", {"batch", "sequence"}}},
            {{"name", "decoder_input_ids"}, {"dtype", "int64"}, {"shape", {"batch", "decoder_sequence"}},
             {"starts_with", a.decoder_start_id}}};
  return {ids, {{"name", "attention_mask"}, {"dtype", "int64"}, {"shape", {"batch", "sequence"}}}};
}

// How the dataset turned raw data into the rows the model reads (so another runtime can feed it
// the same way), from the run's config.
nlohmann::json normalization_of(const config::Config& cfg) {
  nlohmann::json n = {{"dataset", cfg.data.name}};
  const std::string& d = cfg.data.name;
  if (d == "mnist" || d == "fashion_mnist") {
    const auto* o = dynamic_cast<const data::IdxDatasetOptions*>(cfg.data.options.get());
    const bool standardize = !o || o->standardize;
    n["pixels"] = "uint8 / 255";
    if (standardize) {
      n["mean"] = {d == "mnist" ? 0.1307 : 0.2860};
      n["std"] = {d == "mnist" ? 0.3081 : 0.3530};
      n["formula"] = "(pixel / 255 - mean) / std";
    } else {
      n["formula"] = "pixel / 255";
    }
  } else if (d == "cifar10") {
    n["pixels"] = "uint8 / 255";
    n["mean"] = {0.4914, 0.4822, 0.4465};
    n["std"] = {0.2470, 0.2435, 0.2616};
    n["formula"] = "(pixel / 255 - mean[c]) / std[c]";
  } else if (d == "csv") {
    const auto* o = dynamic_cast<const data::CsvDatasetOptions*>(cfg.data.options.get());
    n["formula"] = o && o->standardize ? "z-score of each feature with the training file's mean and std"
                                       : "the CSV's feature values as they are";
  } else if (d == "synthetic_images" || d == "synthetic") {
    n["formula"] = "none: generated rows, read as they are";
  } else {
    n["formula"] = "none: the dataset's rows as they are (token ids for text)";
  }
  if (!cfg.data.normalize_mean.empty())
    n["then"] = {{"mean", cfg.data.normalize_mean}, {"std", cfg.data.normalize_std},
                 {"formula", "(x - mean[c]) / std[c] over dim 1 (data.normalize_mean / normalize_std)"}};
  return n;
}

// Names of the classes where the dataset has them.
nlohmann::json labels_of(const config::Config& cfg, const data::DataSpec& spec) {
  if (spec.num_classes <= 0) return nullptr;
  const std::string& d = cfg.data.name;
  if (d == "mnist" || d == "digits") {
    nlohmann::json l = nlohmann::json::array();
    for (int i = 0; i < 10; ++i) l.push_back(std::to_string(i));
    return l;
  }
  if (d == "fashion_mnist")
    return {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
            "Ankle boot"};
  if (d == "cifar10")
    return {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
  return nullptr;
}

nlohmann::json outputs_of(const data::DataSpec& spec, const models::hf::Arch& a, models::hf::Head head) {
  if (head == models::hf::Head::classify)
    return {{{"name", "logits"}, {"dtype", "float32"}, {"shape", {"batch", spec.num_classes > 0 ? spec.num_classes : a.num_labels}}}};
  return {{{"name", "logits"}, {"dtype", "float32"},
           {"shape", {"batch", a.family == "t5" ? "decoder_sequence" : "sequence", a.vocab}}}};
}

bool has_quantize_pass(const config::Config& cfg) {
  for (const auto& p : cfg.compression)
    if (p.name == "quantize") return true;
  return false;
}

// The ONNX Runtime check of an export, started before anything is built (its Python imports run
// meanwhile); stopped and its scratch folder removed however the export ends.
class BackgroundCheck {
 public:
  explicit BackgroundCheck(bool on)
      : scratch_(fs::temp_directory_path() / ("sculpt-onnx-check-" + std::to_string(::getpid()))) {
    if (on) check_ = start_onnx_check(scratch_);
  }
  ~BackgroundCheck() {
    abandon_onnx_check(check_);
    std::error_code ec;
    fs::remove_all(scratch_, ec);
  }
  BackgroundCheck(const BackgroundCheck&) = delete;
  BackgroundCheck& operator=(const BackgroundCheck&) = delete;
  OnnxCheck& check() { return check_; }

 private:
  fs::path scratch_;
  OnnxCheck check_;
};

nlohmann::json export_onnx(const ExportRequest& r, const config::Config& cfg, const fs::path& run,
                           const fs::path& out) {
  const fs::path quantized = run / "quantized";
  const bool q = has_quantize_pass(cfg);
  if (q)
    SCULPT_CHECK(fs::exists(quantized / "manifest.json"), "export --format onnx: the run has a quantize "
                 "pass but ", quantized.string(), " does not exist (the quantize pass writes it when "
                 "training ends; export: false turns it off)");
  Phases phases;
  BackgroundCheck background(r.verify);
  auto parts = trainers::build_run_parts(cfg, c10::Device(c10::kCPU));
  phases.done("model and data built");
  auto& model = *parts.model;
  const fs::path weights = run / "model.safetensors";
  model.load_state_tensors(io::load_safetensors(weights.string()), weights.string());
  phases.done("model.safetensors loaded");
  // The writer reads quantized Linear and Conv2d layers from <run>/quantized; an embedding may
  // also be read through its module (T5's relative-position table), so it is materialized.
  materialize_layers(model, q ? quantized : fs::path(), {"linear", "conv2d"});
  phases.done("layers materialized");
  model.eval();
  const data::DataSpec& spec = parts.all->spec();
  const data::Dataset& rows = parts.split.val.size() > 0 ? parts.split.val : parts.split.train;
  const at::Tensor sample = rows.input_rows(at::arange(std::min<int64_t>(4, rows.size()), at::kLong));

  nlohmann::json info;
  io::replace_dir_atomic(out.string(), [&](const fs::path& tmp) {
    const fs::path file = tmp / "model.onnx";
    const OnnxExport ox = write_onnx_export(model, cfg, spec, q ? quantized.string() : "", file);
    phases.done("model.onnx written");
    info = {{"format", "onnx"},
            {"run", fs::absolute(run).string()},
            {"model", cfg.model.name},
            {"file", "model.onnx"},
            {"opset", 17},
            {"bytes", ox.bytes},
            {"nodes", ox.nodes},
            {"parameters", ox.parameters},
            {"inputs", ox.inputs},
            {"outputs", ox.outputs},
            {"normalization", normalization_of(cfg)},
            {"labels", labels_of(cfg, spec)}};
    if (q) {
      info["quantized_from"] = fs::absolute(quantized).string();
      info["scheme"] = "QDQ (QuantizeLinear/DequantizeLinear): integer weights, per-tensor input scales";
      info["quantized_layers"] = ox.quantized;
      info["float_layers"] = ox.float_layers;
      if (!ox.space_to_depth.empty()) info["space_to_depth"] = ox.space_to_depth;
    }
    if (r.verify) {
      // ONNX Runtime runs model.onnx in the background while Sculpt builds its reference: the
      // run's integer model (<run>/quantized; the writer read the grids from there without it).
      torch::NoGradGuard no_grad;
      submit_onnx_check(background.check(), file, onnx_feeds(cfg, spec, sample));
      if (q) quant::load_quantized(model, quantized.string());
      phases.done("ONNX Runtime running; integer model loaded");
      const at::Tensor expected = model.forward(sample);
      phases.done("Sculpt's outputs for the check");
      nlohmann::json v = finish_onnx_check(background.check(), expected);
      phases.done("ONNX Runtime check");
      const double tol = q ? std::max(1e-4, ox.quant_step) : 1e-4;
      v["tolerance"] = tol;
      v["how"] = q ? "ONNX Runtime (CPU) on the first validation rows against the run's integer model "
                     "(<run>/quantized); tolerance: one quantization step of the last quantized "
                     "layer's input, through that layer"
                   : "ONNX Runtime (CPU) on the first validation rows against the run's model";
      info["verify"] = v;
      if (!(v.at("max_abs_diff").get<double>() <= tol))
        throw std::runtime_error("export onnx: verification failed: ONNX Runtime's outputs differ from "
                                 "Sculpt's by " + std::to_string(v.at("max_abs_diff").get<double>()) +
                                 " (tolerance " + std::to_string(tol) + "); nothing was written");
    }
    io::write_file_atomic((tmp / "export.json").string(), info.dump(2) + "\n");
  });
  phases.done("folder in place");
  log::info("export: ", out.string(), " (onnx)");
  return info;
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
  SingleThread single_thread;
  if (r.format == "onnx") return export_onnx(r, cfg, run, out);
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
  Phases phases;
  auto parts = trainers::build_run_parts(cfg, c10::Device(c10::kCPU));
  phases.done("model and data built");
  auto& model = *parts.model;
  model.load_state_tensors(io::load_safetensors(weights.string()), weights.string());
  phases.done("model.safetensors loaded");
  // compressed-tensors writes every layer of <run>/quantized from there (the integer model is not
  // loaded: its weights are the grids dequantized, which the writer does itself).
  materialize_layers(model, ct ? quantized : fs::path(), {"linear", "conv2d", "embedding"});
  phases.done("layers materialized");
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
    HfExport hx = write_hf_export(model, source, head, spec.num_classes, tmp, /*write_weights=*/!ct);
    phases.done("Hugging Face layout written");
    info = {{"format", r.format},
            {"run", fs::absolute(run).string()},
            {"source_checkpoint", source.dir},
            {"architecture", models::hf::architecture_name(hx.arch, head)},
            {"tensors", hx.tensors},
            {"copied", hx.copied},
            {"inputs", inputs_of(spec, source)},
            {"outputs", outputs_of(spec, hx.arch, head)},
            {"normalization", normalization_of(cfg)},
            {"labels", labels_of(cfg, spec)}};
    if (ct) {
      const CtExport cx = write_ct_export(model, hx, source, head, quantized, tmp, r.verify);
      phases.done("compressed-tensors written and checked");
      info["quantized_from"] = fs::absolute(quantized).string();
      info["scheme"] = cx.scheme;
      if (!cx.embedding_scheme.empty()) info["embedding_scheme"] = cx.embedding_scheme;
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
      phases.done("read back by Sculpt's loader and compared");
    }
    io::write_file_atomic((tmp / "export.json").string(), info.dump(2) + "\n");
  });
  phases.done("folder in place");
  log::info("export: ", out.string(), " (", r.format, ")");
  return info;
}

}  // namespace sculpt::compression
