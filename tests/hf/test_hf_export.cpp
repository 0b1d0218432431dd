// `sculpt export RUN --format hf`: a run of a Hugging Face checkpoint goes out in the same
// layout, config.json updated for what pruning and a shallower student removed, and
// transformers (the venv's) loads it and computes Sculpt's logits within 1e-4
// (tests/hf/check_export.py). Models config.json cannot describe are refused, naming the layer.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <filesystem>

#include "core/io/safetensors.h"
#include "core/models/hf/hf_model.h"
#include "tests/hf/hf_support.h"
#include "tests/support/process.h"

namespace fs = std::filesystem;
using namespace sculpt;
using namespace sculpt::test::hf;

namespace {

const std::string kPrune =
    "  - {name: prune, include: ['.*\\.fc1$'], pattern: channel, scorer: magnitude, "
    "schedule: one_shot, sparsity: 0.5, start: 1, remove: true}\n";

std::string prune_heads(int64_t heads) {
  return "  - {name: prune, include: ['.*\\.fc1$', '.*self_attn\\.o$'], pattern: channel, "
         "scorer: magnitude, schedule: one_shot, sparsity: 0.5, start: 1, remove: true, "
         "overrides: [{layers: '.*self_attn\\.o$', pattern: head, heads: " +
         std::to_string(heads) + ", sparsity: 0.5}]}\n";
}

test::ProcessResult run_export(const std::string& run, const std::string& extra = "") {
  return test::run_process(std::string(SCULPT_BIN) + " export " + run + " --format hf" + extra);
}

// Sculpt's logits of the export (read back by Sculpt) on fixed inputs, written where
// check_export.py reads them; then transformers' on the same inputs.
void check_with_transformers(const std::string& out, const Family& f) {
  auto arch = models::hf::read_arch(out);
  data::DataSpec spec;
  io::NamedTensors ref;
  at::Tensor input;
  if (f.kind == "images") {
    spec.input_shape = {3, 32, 32};
    spec.num_classes = arch.num_labels;
    input = at::randn({2, 3, 32, 32}, at::TensorOptions().dtype(at::kFloat));
    ref.emplace_back("pixel_values", input);
  } else {
    spec.vocab_size = 30;
    at::Tensor ids = at::randint(4, 30, {2, 12}, at::kLong);
    ids.select(0, 1).narrow(0, 8, 4).fill_(-1);  // padding in the second row
    ref.emplace_back("input_ids", ids);
    input = ids;
    spec.input_shape = {12};
    if (arch.family == "t5") {
      at::Tensor dec = at::randint(4, 30, {2, 5}, at::kLong);
      dec.select(1, 0).fill_(arch.decoder_start_id);
      ref.emplace_back("decoder_input_ids", dec);
      input = at::cat({ids, dec}, 1);
      spec.source_len = 12;
      spec.input_shape = {17};
    }
    if (arch.head == models::hf::Head::classify) spec.num_classes = arch.num_labels;
  }
  auto m = models::hf::load_pretrained(out, spec);
  m->eval();
  torch::NoGradGuard no_grad;
  ref.emplace_back("logits", m->forward(input));
  const std::string ref_file = out + "/../check.safetensors";
  io::save_safetensors(ref_file, ref);
  auto r = test::run_process(std::string(SCULPT_TEST_PYTHON_EXE) + " " SCULPT_SOURCE_DIR
                             "/tests/hf/check_export.py " + out + " " + ref_file);
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
}

}  // namespace

TEST_CASE("export hf: pruned, distilled and fine-tuned runs of every family load in transformers "
          "with Sculpt's logits", "[hf][export]") {
  struct Case {
    std::string fixture, model_extra, compression;
  };
  const std::vector<Case> cases = {
      {"llama_gqa", "", prune_heads(2)},  // feed-forward neurons and a key/value group removed
      {"qwen2", ", layers: 1", kPrune},   // a shallower student, fewer neurons
      {"gpt2", "", kPrune},
      {"bert_mlm", "", kPrune},
      {"roberta_cls", "", ""},            // a fresh classifier for the data's 4 classes
      {"t5_v1_1", ", layers: 1, decoder_layers: 2", kPrune},
      {"vit", "", kPrune}};
  for (const auto& c : cases) {
    INFO("fixture " << c.fixture);
    const Family& f = family(c.fixture);
    const std::string run = train("export", f, model_yaml(f, c.model_extra), c.compression);
    if (run.empty()) continue;
    auto r = run_export(run);
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    const std::string out = run + "/export-hf";
    auto info = nlohmann::json::parse(test::read_text(out + "/export.json"));
    CHECK(info["verify"]["max_abs_diff"].get<double>() <= 1e-4);
    // config.json says what compression left
    auto cfg = nlohmann::json::parse(test::read_text(out + "/config.json"));
    auto w = weights(run);
    const std::string layer = f.kind == "seq2seq" ? "enc0.layer." : "layer0.layer.";
    const int64_t ff = w.at(layer + "fc1.weight").size(0);
    const char* ff_key = f.kind == "seq2seq" ? "d_ff" : c.fixture == "gpt2" ? "n_inner" : "intermediate_size";
    CHECK(cfg[ff_key].get<int64_t>() == ff);
    check_with_transformers(out, f);
  }
}

TEST_CASE("export hf refuses what config.json cannot describe, and keeps an existing folder",
          "[hf][export]") {
  // GPT-2's heads are hidden / n_head wide: a model with heads removed has no config.json.
  const Family& f = family("gpt2");
  const std::string run = train("export_bad", f, model_yaml(f), prune_heads(4));
  REQUIRE(!run.empty());
  auto r = run_export(run);
  INFO(r.out << r.err);
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("layer0.layer.self_attn has 2 of 4 heads") != std::string::npos);
  CHECK_FALSE(fs::exists(run + "/export-hf"));
  // an unknown format lists the known ones; an existing folder needs --force
  auto bad = test::run_process(std::string(SCULPT_BIN) + " export " + run + " --format tflite");
  CHECK(bad.exit_code == 2);
  CHECK(bad.err.find("formats: hf") != std::string::npos);
  fs::create_directories(run + "/export-hf");
  test::write_text(run + "/export-hf/keep.txt", "mine");
  auto exists = run_export(run);
  CHECK(exists.exit_code == 2);
  CHECK(exists.err.find("--force") != std::string::npos);
  CHECK(test::read_text(run + "/export-hf/keep.txt") == "mine");
  // a folder that is not a run
  auto norun = test::run_process(std::string(SCULPT_BIN) + " export " + run + "/export-hf --format hf");
  CHECK(norun.exit_code == 2);
  CHECK(norun.err.find("no config.yaml") != std::string::npos);
}

TEST_CASE("export: in the config exports at the end of training; bad export keys fail before "
          "training", "[hf][export]") {
  const Family& f = family("llama_gqa");
  const std::string run =
      train("export_cfg", f, model_yaml(f) + "export: {formats: [hf]}\n", prune_heads(2));
  REQUIRE(!run.empty());
  const std::string out = run + "/export-hf";
  REQUIRE(fs::exists(out + "/config.json"));
  auto info = nlohmann::json::parse(test::read_text(out + "/export.json"));
  CHECK(info["verify"]["max_abs_diff"].get<double>() <= 1e-4);
  check_with_transformers(out, f);

  // Refused before any step: an unknown format; hf for a built-in model; compressed-tensors
  // without a quantize pass.
  const std::string dir = test::temp_dir("hf_export_cfg_bad");
  auto refused = [&](const std::string& model, const std::string& formats) {
    const std::string yaml = "run: {name: r, device: cpu, output_dir: '" + dir + "/run'}\n" + model +
                             "data: {name: synthetic_blobs, samples: 64, features: 4, classes: 2}\n"
                             "trainer: {max_steps: 2}\nexport: {formats: " +
                             formats + "}\n";
    test::write_text(dir + "/bad.yaml", yaml);
    return test::run_process(std::string(SCULPT_BIN) + " train " + dir + "/bad.yaml");
  };
  auto unknown = refused("model: {name: mlp}\n", "[tflite]");
  CHECK(unknown.exit_code == 2);
  CHECK(unknown.err.find("unknown export format 'tflite'; formats: hf, compressed-tensors, onnx") !=
        std::string::npos);
  auto builtin = refused("model: {name: mlp}\n", "[hf]");
  CHECK(builtin.exit_code == 2);
  CHECK(builtin.err.find("export format hf needs a model from a Hugging Face checkpoint") !=
        std::string::npos);
  auto no_quantize = refused(model_yaml(f), "[compressed-tensors]");
  CHECK(no_quantize.exit_code == 2);
  CHECK(no_quantize.err.find("needs a quantize pass") != std::string::npos);
  CHECK_FALSE(fs::exists(dir + "/run/model.safetensors"));
}

TEST_CASE("prune uniform: true removes the same number of neurons in every layer under a group "
          "budget; a non-uniform model is refused by export hf naming the option",
          "[hf][export]") {
  const Family& f = family("llama_gqa");
  // A group budget (uniform) and per-layer sparsity overrides (not uniform).
  const std::string uniform =
      "  - {name: prune, include: ['.*\\.fc1$'], pattern: channel, scorer: magnitude, "
      "schedule: one_shot, sparsity: 0.5, start: 1, remove: true, group: ffn, uniform: true}\n";
  const std::string run = train("uniform", f, model_yaml(f), uniform);
  REQUIRE(!run.empty());
  auto w = weights(run);
  const auto arch = models::hf::read_arch(std::string(SCULPT_HF_FIXTURES) + "/" + f.fixture);
  const int64_t ff0 = w.at("layer0.layer.fc1.weight").size(0);
  CHECK(ff0 < arch.ff);
  REQUIRE(arch.layers >= 2);
  for (int64_t i = 1; i < arch.layers; ++i)
    CHECK(w.at("layer" + std::to_string(i) + ".layer.fc1.weight").size(0) == ff0);
  auto ok = run_export(run);
  INFO(ok.out << ok.err);
  CHECK(ok.exit_code == 0);

  const std::string uneven =
      "  - {name: prune, include: ['.*\\.fc1$'], pattern: channel, scorer: magnitude, "
      "schedule: one_shot, sparsity: 0.5, start: 1, remove: true, "
      "overrides: [{layers: 'layer0\\..*', sparsity: 0.25}]}\n";
  const std::string run2 = train("uneven", f, model_yaml(f), uneven);
  REQUIRE(!run2.empty());
  auto refused = run_export(run2);
  CHECK(refused.exit_code == 2);
  CHECK(refused.err.find("uniform: true") != std::string::npos);
  CHECK_FALSE(fs::exists(run2 + "/export-hf"));
}
