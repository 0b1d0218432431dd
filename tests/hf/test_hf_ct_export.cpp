// `sculpt export RUN --format compressed-tensors`: QAT runs of Hugging Face checkpoints (W8A8,
// W4A16 with groups of 32, 2:4-pruned W8A8; the token table quantized with them where it is not
// tied to the LM head) go out with the integer model's own grid values and scales in the
// `compressed-tensors` package's layout; transformers with compressed-tensors (the venv's) loads
// each folder on the CPU and its logits match the run's integer model (<run>/quantized loaded by
// Sculpt) within one output quantization step (tests/hf/check_ct_export.py). What the format
// cannot express is refused, naming the layer.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>

#include "cli/app.h"
#include "compression/passes/quantize/int8_model.h"
#include "core/config/config.h"
#include "core/io/safetensors.h"
#include "tests/hf/hf_support.h"
#include "tests/support/process.h"
#include "trainers/run_parts.h"

namespace fs = std::filesystem;
using namespace sculpt;
using namespace sculpt::test::hf;

namespace {

const std::string kW8A8 =
    "  - {name: quantize, weight_bits: 8, act_bits: 8, weight_granularity: per_channel, "
    "verify: false}\n";
// vLLM's layout: the token table and the LM head float (llm-compressor's default ignore).
const std::string kW8A8Body =
    "  - {name: quantize, weight_bits: 8, act_bits: 8, weight_granularity: per_channel, "
    "verify: false, exclude: ['embed.*', 'head\\.lm']}\n";
const std::string kW4A16 =
    "  - {name: quantize, weight_bits: 4, act_bits: 0, weight_granularity: per_group, "
    "group_size: 32}\n";
const std::string kPrune24 =
    "  - {name: prune, include: ['layer.*'], pattern: 'n:m', n: 2, m: 4, schedule: one_shot, "
    "start: 1}\n";

test::ProcessResult run_export(const std::string& run, const std::string& format) {
  return test::run_process(std::string(SCULPT_BIN) + " export " + run + " --format " + format);
}

// The run's integer model's logits (<run>/quantized loaded as `sculpt eval --quantized` loads
// it) on fixed inputs with padding in the second row, where check_ct_export.py reads them.
std::string integer_model_reference(const std::string& run) {
  cli::register_builtins();
  auto cfg = config::Config::load(run + "/config.yaml");
  auto parts = trainers::build_run_parts(cfg, c10::Device(c10::kCPU));
  auto& model = *parts.model;
  model.load_state_tensors(io::load_safetensors(run + "/model.safetensors"),
                           run + "/model.safetensors");
  quant::load_quantized(model, run + "/quantized");
  model.eval();
  torch::NoGradGuard no_grad;
  at::manual_seed(5);
  at::Tensor ids = at::randint(4, 30, {2, 16}, at::kLong);
  ids.select(0, 1).narrow(0, 12, 4).fill_(-1);
  const std::string path = run + "/ct_check.safetensors";
  io::save_safetensors(path, {{"input_ids", ids}, {"logits", model.forward(ids)}});
  return path;
}

const io::TensorEntry* entry(const io::SafetensorsHeader& h, const std::string& name) {
  for (const auto& e : h.tensors)
    if (e.name == name) return &e;
  return nullptr;
}

}  // namespace

TEST_CASE("export compressed-tensors: W8A8, W4A16 and 2:4 W8A8 runs load in transformers with "
          "the integer model's logits", "[hf][export][compressed-tensors]") {
  struct Case {
    std::string fixture, compression, scheme, format;  // format: quantization_config's
    std::string embedding;  // the token table's scheme ("" when it stays float)
    double linear_ratio;  // quantized Linear bytes / their fp32 bytes, at most
  };
  // W8A8: 1 byte a weight + a float scale per row (64 inputs: 0.25 + 1/64); W4A16 with groups
  // of 32 (the fixtures are 64 and 96 wide): half a byte + a float scale per 32 (0.125 + 1/32).
  // llama_gqa's token table is its own (untied): quantized with the run, weights only, in its
  // own group: at 8 bits naive-quantized int8 (the Linear layers int-quantized: mixed-precision),
  // at 4 bits pack-quantized as the Linear layers, with quantization_config.dequantize (the only
  // way transformers loads a packed nn.Embedding); bert_mlm's is tied to the MLM decoder: float.
  const std::vector<Case> cases = {
      {"llama_gqa", kW8A8Body, "W8A8", "int-quantized", "", 0.27},
      {"llama_gqa", kW8A8, "W8A8", "mixed-precision", "W8A16", 0.27},
      {"llama_gqa", kW4A16, "W4A16", "pack-quantized", "W4A16", 0.157},
      {"bert_mlm", kW8A8, "W8A8", "int-quantized", "", 0.27},
      {"bert_mlm", kW4A16, "W4A16", "pack-quantized", "", 0.157},
      {"llama_gqa", kPrune24 + kW8A8Body, "W8A8", "int-quantized", "", 0.27}};
  for (const auto& c : cases) {
    INFO("fixture " << c.fixture << ", recipe " << c.compression);
    const Family& f = family(c.fixture);
    const std::string run = train("ct", f, model_yaml(f), c.compression);
    if (run.empty()) continue;
    auto r = run_export(run, "compressed-tensors");
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    const std::string out = run + "/export-compressed-tensors";
    auto info = nlohmann::json::parse(test::read_text(out + "/export.json"));
    CHECK(info["scheme"] == c.scheme);
    CHECK(info["verify"]["max_abs_diff"].get<double>() == 0);
    auto cfg = nlohmann::json::parse(test::read_text(out + "/config.json"));
    const auto& qc = cfg["quantization_config"];
    CHECK(qc["quant_method"] == "compressed-tensors");
    CHECK(qc["quantization_status"] == "compressed");
    CHECK(qc["format"] == c.format);
    const auto& g = qc["config_groups"]["group_0"];
    CHECK(g["targets"] == nlohmann::json::array({"Linear"}));
    const bool w8 = c.scheme == "W8A8";
    // the token table: its own config group (weights only, pack-quantized), or float
    const std::string table = c.fixture == "llama_gqa" ? "model.embed_tokens." : "bert.embeddings.word_embeddings.";
    {
      const auto h = io::read_safetensors_header(out + "/model.safetensors");
      if (!c.embedding.empty()) {
        CHECK(info["embedding_scheme"] == c.embedding);
        REQUIRE(qc["config_groups"].contains("group_1"));
        const auto& e = qc["config_groups"]["group_1"];
        CHECK(e["targets"] == nlohmann::json::array({"Embedding"}));
        CHECK(e["format"] == (w8 ? "naive-quantized" : "pack-quantized"));
        CHECK(qc.value("dequantize", false) == !w8);
        CHECK(e["input_activations"].is_null());
        CHECK(e["weights"]["num_bits"] == (w8 ? 8 : 4));
        const auto* q = entry(h, table + (w8 ? "weight" : "weight_packed"));
        REQUIRE(q);
        CHECK(q->dtype == (w8 ? "I8" : "I32"));
        const int64_t vocab = q->shape[0], hidden = 64;
        CHECK(q->shape == std::vector<int64_t>{vocab, w8 ? hidden : hidden / 8});
        CHECK(entry(h, table + "weight_scale")->shape ==
              (w8 ? std::vector<int64_t>{vocab, 1} : std::vector<int64_t>{vocab, hidden / 32}));
        CHECK(entry(h, table + (w8 ? "weight_packed" : "weight")) == nullptr);
        CHECK(info["bytes"]["quantized_embedding"].get<int64_t>() > 0);
      } else {
        CHECK_FALSE(qc["config_groups"].contains("group_1"));
        const auto* w = entry(h, table + "weight");
        REQUIRE(w);
        CHECK(w->dtype == "F32");
        if (c.fixture == "bert_mlm")  // quantized by the run, kept float: tied to the decoder
          CHECK(info["float_layers"].dump().find("tied to the LM head") != std::string::npos);
      }
    }
    // the tensors: names, dtypes and shapes of compressed-tensors' formats
    const auto h = io::read_safetensors_header(out + "/model.safetensors");
    const std::string p =
        c.fixture == "llama_gqa" ? "model.layers.0.mlp.down_proj." : "bert.encoder.layer.0.output.dense.";
    const int64_t rows = 64, cols = c.fixture == "llama_gqa" ? 96 : 128;
    CHECK(entry(h, p + "weight_scale") != nullptr);
    if (w8) {
      const auto* w = entry(h, p + "weight");
      REQUIRE(w);
      CHECK(w->dtype == "I8");
      CHECK(entry(h, p + "weight_scale")->shape == std::vector<int64_t>{rows, 1});
      CHECK(entry(h, p + "input_scale")->shape == std::vector<int64_t>{1});
      CHECK(g["input_activations"]["strategy"] == "tensor");
      CHECK(g["weights"]["strategy"] == "channel");
    } else {
      const auto* w = entry(h, p + "weight_packed");
      REQUIRE(w);
      CHECK(w->dtype == "I32");
      CHECK(w->shape == std::vector<int64_t>{rows, cols / 8});
      CHECK(entry(h, p + "weight_scale")->shape == std::vector<int64_t>{rows, cols / 32});
      CHECK(entry(h, p + "weight_shape")->dtype == "I64");
      CHECK(entry(h, p + "weight") == nullptr);
      CHECK(g["input_activations"].is_null());
      CHECK(g["weights"]["group_size"] == 32);
    }
    if (c.compression.find("n:m") != std::string::npos) {
      CHECK(info["sparsity"]["structure"] == "2:4");
    }
    if (c.compression.find("head") != std::string::npos && c.fixture == "llama_gqa") {
      CHECK(qc["ignore"] == nlohmann::json::array({"lm_head"}));
    }
    const double linear = info["bytes"]["quantized_linear_ratio"].get<double>();
    CHECK(linear <= c.linear_ratio);
    // the whole file against the fp32 Hugging Face export of the same run
    auto hf = run_export(run, "hf");
    REQUIRE(hf.exit_code == 0);
    const double file = static_cast<double>(fs::file_size(out + "/model.safetensors")) /
                        static_cast<double>(fs::file_size(run + "/export-hf/model.safetensors"));
    std::printf("compressed-tensors %s %s%s: model.safetensors %.4fx the fp32 hf export's, "
                "quantized Linear weights %.4fx their fp32 bytes\n",
                c.fixture.c_str(), c.scheme.c_str(),
                c.compression.find("n:m") != std::string::npos ? " (2:4)" : "", file, linear);
    // transformers + compressed-tensors against the integer model
    const std::string ref = integer_model_reference(run);
    auto py = test::run_process(std::string(SCULPT_TEST_PYTHON_EXE) + " " SCULPT_SOURCE_DIR
                                "/tests/hf/check_ct_export.py " + out + " " + ref);
    INFO(py.out << py.err);
    std::printf("%s", py.out.c_str());
    CHECK(py.exit_code == 0);
  }
}

TEST_CASE("export compressed-tensors refuses runs and layers the format cannot express",
          "[hf][export][compressed-tensors]") {
  const Family& llama = family("llama_gqa");
  // no quantize pass
  const std::string pruned = train("ct_noq", llama, model_yaml(llama), kPrune24);
  REQUIRE(!pruned.empty());
  auto r = run_export(pruned, "compressed-tensors");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("needs a run with a quantize pass (weight_bits 8 or 4") != std::string::npos);
  CHECK(r.err.find("[prune]") != std::string::npos);
  CHECK_FALSE(fs::exists(pruned + "/export-compressed-tensors"));
  CHECK_FALSE(fs::exists(pruned + "/export-compressed-tensors.tmp"));
  // asymmetric weights
  const std::string asym = train("ct_asym", llama, model_yaml(llama),
                                 "  - {name: quantize, weight_bits: 8, act_bits: 0, "
                                 "weight_scheme: asymmetric, include: ['layer.*']}\n");
  REQUIRE(!asym.empty());
  r = run_export(asym, "compressed-tensors");
  INFO(r.out << r.err);
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("layer layer0.layer.") != std::string::npos);
  CHECK(r.err.find("weight_scheme: symmetric") != std::string::npos);
  // GPT-2's attention and MLP are transformers Conv1D modules
  const Family& gpt2 = family("gpt2");
  const std::string g = train("ct_gpt2", gpt2, model_yaml(gpt2),
                              "  - {name: quantize, weight_bits: 4, act_bits: 0, "
                              "include: ['layer.*']}\n");
  REQUIRE(!g.empty());
  r = run_export(g, "compressed-tensors");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("Conv1D") != std::string::npos);
  CHECK(r.err.find("layer layer0.layer.") != std::string::npos);
  CHECK_FALSE(fs::exists(g + "/export-compressed-tensors"));
  CHECK_FALSE(fs::exists(g + "/export-compressed-tensors.tmp"));  // no half-written folder either
  // the format list names it
  auto bad = test::run_process(std::string(SCULPT_BIN) + " export " + g + " --format gguf");
  CHECK(bad.err.find("formats: hf, compressed-tensors") != std::string::npos);
}
