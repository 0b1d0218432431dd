// `sculpt export RUN --format onnx` (compression/exports/onnx_export.h): every built-in family and
// the Hugging Face families go out as ONNX that onnx.checker accepts and ONNX Runtime (the
// venv's) runs with Sculpt's outputs (tests/onnx/check_onnx.py: batch 1 and 3, two sequence
// lengths for text); a QAT LeNet-5 as QDQ int8 that ONNX Runtime runs with integer kernels; a
// channel-pruned model physically smaller; the exported model's test accuracy equal to
// `sculpt eval`'s (quickstart, MNIST QAT int8; tests/onnx/eval_onnx.py); the bad inputs.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/app.h"
#include "compression/exports/onnx_export.h"
#include "compression/passes/quantize/int8_model.h"
#include "core/config/config.h"
#include "core/error.h"
#include "core/data/transforms.h"
#include "core/io/safetensors.h"
#include "core/nn/layers.h"
#include "tests/hf/hf_support.h"
#include "tests/support/process.h"
#include "trainers/run_parts.h"

namespace fs = std::filesystem;
using namespace sculpt;

namespace {

const std::string kPy = SCULPT_TEST_PYTHON_EXE;
const std::string kShared = SCULPT_SHARED_DATA;

// `sculpt train` of `body` (model, data, compression ...) in a fresh folder; the run folder.
std::string train(const std::string& tag, const std::string& body, const std::string& trainer =
                  "trainer: {max_steps: 4, log_every: 1, eval_every: 0, tensorboard: false}\n") {
  const std::string dir = test::temp_dir("onnx_" + tag);
  const std::string yaml = "run: {name: r, device: cpu, seed: 1, output_dir: '" + dir + "/run'}\n" +
                           body + "optimizer: {name: adamw, lr: 0.001}\n" + trainer;
  test::write_text(dir + "/run.yaml", yaml);
  auto r = test::run_process(std::string(SCULPT_BIN) + " train " + dir + "/run.yaml");
  INFO(yaml << "\n" << r.out << r.err);
  REQUIRE(r.exit_code == 0);
  return dir + "/run";
}

test::ProcessResult run_export(const std::string& run, const std::string& extra = "") {
  return test::run_process(std::string(SCULPT_BIN) + " export " + run + " --format onnx" + extra);
}

// The run's model as Sculpt evaluates it (the integer model when the run has <run>/quantized).
struct Loaded {
  explicit Loaded(const std::string& run)
      : cfg(config::Config::load(run + "/config.yaml")),
        parts(trainers::build_run_parts(cfg, c10::Device(c10::kCPU))) {}
  config::Config cfg;
  trainers::RunParts parts;
};
std::unique_ptr<Loaded> load_run(const std::string& run) {
  cli::register_builtins();
  auto lp = std::make_unique<Loaded>(run);
  Loaded& l = *lp;
  auto& m = *l.parts.model;
  m.load_state_tensors(io::load_safetensors(run + "/model.safetensors"), run);
  for (auto& [n, layer] : nn::compressible_layers(m)) layer->materialize();
  if (fs::exists(run + "/quantized/manifest.json")) quant::load_quantized(m, run + "/quantized");
  m.eval();
  return lp;
}

// Sculpt's logits at batch 1 and 3 (text: at two sequence lengths too), checked by
// check_onnx.py against ONNX Runtime on the export in <run>/export-onnx.
void check_with_onnxruntime(const std::string& run, bool qdq = false) {
  REQUIRE(!kPy.empty());
  torch::NoGradGuard no_grad;
  auto lp = load_run(run);
  Loaded& l = *lp;
  const auto& spec = l.parts.all->spec();
  const data::Dataset& rows = l.parts.split.val.size() >= 3 ? l.parts.split.val : l.parts.split.train;
  io::NamedTensors ref;
  int c = 0;
  auto add = [&](const at::Tensor& x) {
    const std::string p = "c" + std::to_string(c++);
    for (auto& [n, t] : compression::onnx_feeds(l.cfg, spec, x)) ref.emplace_back(p + ".in." + n, t);
    ref.emplace_back(p + ".expected", l.parts.model->forward(x).contiguous());
  };
  for (int64_t b : {1, 3}) {
    at::Tensor x = rows.input_rows(at::arange(b, at::kLong));
    add(x);
    if (x.dtype() == at::kLong && x.dim() == 2) {
      // shorter rows: the sequence axis is dynamic (seq2seq: the decoder's); some padding too
      const int64_t s = spec.source_len;
      const int64_t cut = s > 0 ? std::min<int64_t>(3, x.size(1) - s - 1) : 3;
      if (cut <= 0) continue;
      at::Tensor y = x.narrow(1, 0, x.size(1) - cut).clone();
      if (l.cfg.model.name == "hf" && s == 0 && b == 3) y.select(0, 2).narrow(0, y.size(1) - 2, 2).fill_(-1);
      add(y);
    }
  }
  const std::string ref_file = run + "/onnx_ref.safetensors";
  io::save_safetensors(ref_file, ref);
  auto r = test::run_process(kPy + " " SCULPT_SOURCE_DIR "/tests/onnx/check_onnx.py " + run +
                             "/export-onnx " + ref_file + (qdq ? " --qdq" : ""));
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
}

nlohmann::json export_json(const std::string& run) {
  return nlohmann::json::parse(test::read_text(run + "/export-onnx/export.json"));
}

void export_and_check(const std::string& run, bool qdq = false) {
  auto r = run_export(run);
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  auto info = export_json(run);
  CHECK(info["verify"]["max_abs_diff"].get<double>() <= info["verify"]["tolerance"].get<double>());
  CHECK(info["inputs"][0]["shape"][0] == "batch");
  check_with_onnxruntime(run, qdq);
}

// The test rows (normalized as evaluation feeds them) and labels, for eval_onnx.py.
void write_test_set(const std::string& run, const std::string& file) {
  auto lp = load_run(run);
  Loaded& l = *lp;
  const data::Dataset* ds = l.parts.test ? l.parts.test.get() : &l.parts.split.val;
  at::Tensor x = ds->inputs().to(at::kFloat);
  if (!l.cfg.data.normalize_mean.empty())
    x = data::normalize(x, l.cfg.data.normalize_mean, l.cfg.data.normalize_std);
  io::save_safetensors(file, {{"input", x.contiguous()}, {"labels", ds->targets().to(at::kLong).contiguous()}});
}

// `sculpt eval`'s test accuracy (its quantized integer model with `quantized`) against the
// ONNX export's on the same rows.
void check_accuracy(const std::string& run, bool quantized) {
  // Not the train split (54k MNIST rows through the integer model, most of the time).
  auto ev = test::run_process(std::string(SCULPT_BIN) + " eval " + run + "/config.yaml" +
                              " --split test --split val" + (quantized ? " --quantized" : ""));
  INFO(ev.out << ev.err);
  REQUIRE(ev.exit_code == 0);
  const auto j = nlohmann::json::parse(ev.out.substr(ev.out.find('{')));
  const std::string split = j.contains("test") ? "test" : "val";
  const double sculpt = j[split]["accuracy"].get<double>();
  write_test_set(run, run + "/test_rows.safetensors");
  auto r = test::run_process(kPy + " " SCULPT_SOURCE_DIR "/tests/onnx/eval_onnx.py " + run +
                             "/export-onnx/model.onnx " + run + "/test_rows.safetensors");
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  const double onnx = nlohmann::json::parse(r.out)["accuracy"].get<double>();
  INFO("sculpt eval " << split << " accuracy " << sculpt << ", ONNX Runtime " << onnx);
  CHECK(std::abs(onnx - sculpt) * 100 <= 0.05);
}

const std::string kImages =
    "data: {name: synthetic_images, samples: 96, size: 16, channels: 1, classes: 10, batch_size: 16, "
    "prefetch: 0}\n";
const std::string kImages3 =
    "data: {name: synthetic_images, samples: 96, size: 16, channels: 3, classes: 10, batch_size: 16, "
    "prefetch: 0}\n";

std::string token_data(const std::string& tag) {
  const std::string dir = test::temp_dir("onnx_data_" + tag);
  test::hf::write_tokens(dir + "/train.bin", 16 * 48, 64, 7);
  return "data: {name: tokens, file: '" + dir + "/train.bin', seq_len: 16, batch_size: 8, "
         "val_fraction: 0.25, prefetch: 0}\ntask: {name: language_model}\n";
}
std::string jsonl_data(const std::string& tag, bool seq2seq) {
  const std::string dir = test::temp_dir("onnx_data_" + tag);
  test::hf::write_jsonl(dir + "/train.jsonl", seq2seq);
  return "data: {name: jsonl, file: '" + dir + "/train.jsonl', batch_size: 8, val_fraction: 0.25, "
         "prefetch: 0}\n" + std::string(seq2seq ? "task: {name: seq2seq}\n" : "");
}

}  // namespace

TEST_CASE("export onnx: every built-in family in float32 runs in ONNX Runtime with Sculpt's outputs",
          "[onnx]") {
  const std::string tr = "model: {name: transformer_encoder, d_model: 32, heads: 4, layers: 2}\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"mlp", "model: {name: mlp, hidden: [32, 16], activation: gelu}\n" + kImages},
      {"lenet5", "model: {name: lenet5}\n" + kImages},
      {"resnet", "model: {name: resnet, depth: 8, width: 0.5}\n" + kImages3},
      {"vit_builtin", "model: {name: transformer_encoder, d_model: 32, heads: 4, layers: 2, patch_size: 4}\n" + kImages},
      {"encoder_tokens", tr + jsonl_data("enc", false)},
      {"lm", "model: {name: transformer_lm, d_model: 32, heads: 4, layers: 2}\n" + token_data("lm")},
      {"seq2seq", "model: {name: transformer_seq2seq, d_model: 32, heads: 4, layers: 1, decoder_layers: 2}\n" +
                      jsonl_data("s2s", true)}};
  for (const auto& [tag, body] : cases) {
    INFO("family " << tag);
    export_and_check(train(tag, body));
  }
}

TEST_CASE("export onnx: a QAT LeNet-5 goes out as QDQ int8 that ONNX Runtime runs with integer "
          "kernels, within one quantization step of Sculpt's integer model", "[onnx]") {
  const std::string run = train("qat", "model: {name: lenet5}\n" + kImages +
                                "compression:\n  - {name: quantize, weight_bits: 8, weight_granularity: "
                                "per_channel, act_bits: 8, freeze_observers_at: 2}\n");
  export_and_check(run, /*qdq=*/true);
  auto info = export_json(run);
  CHECK(info["quantized_layers"].size() == 5);
  CHECK(info["float_layers"].empty());
  // both convolutions (1 -> 6 and 6 -> 16 channels, each with ReLU + 2x2 pool) in space-to-depth
  // form, the same integer model (check_with_onnxruntime above: within one quantization step)
  CHECK(info["space_to_depth"] == nlohmann::json::array({"conv1.seq.0: SpaceToDepth(4)",
                                                         "conv2.seq.0: SpaceToDepth(2)"}));
  // PTQ too, and a ResNet with folded BatchNorms
  const std::string ptq = train("ptq", "model: {name: resnet, depth: 8, width: 0.5}\n" + kImages3 +
                                "compression:\n  - {name: quantize, mode: ptq, weight_bits: 8, act_bits: 8}\n",
                                "trainer: {epochs: 0, log_every: 1, eval_every: 0, tensorboard: false}\n");
  export_and_check(ptq, /*qdq=*/true);
}

TEST_CASE("export onnx: a channel-pruned model goes out physically smaller", "[onnx]") {
  const std::string body = "model: {name: lenet5}\n" + kImages;
  const std::string dense = train("dense", body);
  const std::string pruned = train(
      "pruned", body + "compression:\n  - {name: prune, include: ['conv1.*', 'fc1.*', 'fc2.*'], pattern: "
      "channel, scorer: magnitude, schedule: one_shot, sparsity: 0.5, start: 1, remove: true}\n");
  export_and_check(dense);
  export_and_check(pruned);
  const auto a = export_json(dense), b = export_json(pruned);
  INFO(a.dump() << "\n" << b.dump());
  CHECK(b["parameters"].get<int64_t>() < a["parameters"].get<int64_t>() * 0.7);
  CHECK(fs::file_size(pruned + "/export-onnx/model.onnx") < fs::file_size(dense + "/export-onnx/model.onnx"));
}

TEST_CASE("export onnx: the Hugging Face families in float32 (padding, causal and GQA masks, "
          "rotary, relative positions) run in ONNX Runtime with Sculpt's outputs", "[onnx]") {
  for (const std::string fixture : {"gpt2", "llama_gqa", "bert_mlm", "roberta_cls", "t5_v1_1", "vit"}) {
    INFO("fixture " << fixture);
    const auto& f = test::hf::family(fixture);
    const std::string run = test::hf::train("onnx", f, test::hf::model_yaml(f), "");
    REQUIRE(!run.empty());
    export_and_check(run);
  }
  // a pruned llama (feed-forward neurons and a key/value group removed) and a pruned t5
  for (const std::string fixture : {"llama_gqa", "t5_v1_0"}) {
    INFO("pruned fixture " << fixture);
    const auto& f = test::hf::family(fixture);
    const std::string run = test::hf::train(
        "onnx_pruned", fixture == "t5_v1_0" ? test::hf::Family{"t5_v1_0", "seq2seq", ""} : f,
        test::hf::model_yaml(f),
        "  - {name: prune, include: ['.*\\.fc1$', '.*self_attn\\.o$'], pattern: channel, scorer: magnitude, "
        "schedule: one_shot, sparsity: 0.5, start: 1, remove: true, overrides: [{layers: "
        "'.*self_attn\\.o$', pattern: head, heads: " + std::string(fixture == "t5_v1_0" ? "4" : "2") +
        ", sparsity: 0.5}]}\n");
    REQUIRE(!run.empty());
    export_and_check(run);
  }
}

TEST_CASE("export onnx: the exported model's test accuracy equals sculpt eval's (quickstart, "
          "MNIST LeNet-5 QAT int8)", "[onnx]") {
  {  // the quickstart, shortened
    const std::string dir = test::temp_dir("onnx_quickstart");
    auto r = test::run_process(std::string(SCULPT_BIN) + " train " SCULPT_SOURCE_DIR
                               "/configs/quickstart.yaml run.device=cpu trainer.epochs=1 "
                               "run.output_dir=" + dir + "/run");
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    auto e = run_export(dir + "/run");
    INFO(e.out << e.err);
    REQUIRE(e.exit_code == 0);
    check_accuracy(dir + "/run", false);
  }
  const std::string mnist = kShared + "/mnist";
  if (!fs::exists(mnist)) test::skip_test(mnist + " absent");
  const std::string run = train(
      "mnist_qat",
      "model: {name: lenet5}\ndata: {name: mnist, dir: '" + mnist + "', batch_size: 128, prefetch: 0}\n"
      "compression:\n  - {name: quantize, weight_bits: 8, weight_granularity: per_channel, act_bits: 8, "
      "act_observer: moving_average, freeze_observers_at: 150}\n",
      "trainer: {max_steps: 200, log_every: 50, eval_every: 0, tensorboard: false}\n");
  auto e = run_export(run);
  INFO(e.out << e.err);
  REQUIRE(e.exit_code == 0);
  check_accuracy(run, true);
}

TEST_CASE("export onnx: bad input and failed checks leave nothing behind", "[onnx]") {
  const std::string run = train("bad", "model: {name: lenet5}\n" + kImages);
  // an existing folder needs --force
  fs::create_directories(run + "/export-onnx");
  test::write_text(run + "/export-onnx/keep.txt", "mine");
  auto exists = run_export(run);
  CHECK(exists.exit_code == 2);
  CHECK(exists.err.find("--force") != std::string::npos);
  CHECK(test::read_text(run + "/export-onnx/keep.txt") == "mine");
  fs::remove_all(run + "/export-onnx");
  // a failed comparison (a stand-in Python that reports a difference): exit 1, nothing written
  const std::string fake = run + "/../fake_python.sh";
  test::write_text(fake, "#!/bin/sh\necho '{\"checker\": \"ok\", \"max_abs_diff\": 0.5, \"rows\": 4}'\n");
  fs::permissions(fake, fs::perms::owner_all);
  auto bad = test::run_process("SCULPT_PYTHON=" + fake + " " + SCULPT_BIN + " export " + run + " --format onnx");
  INFO(bad.out << bad.err);
  CHECK(bad.exit_code == 1);
  CHECK(bad.err.find("verification failed") != std::string::npos);
  CHECK_FALSE(fs::exists(run + "/export-onnx"));
  // a Python without onnx/onnxruntime: exit 2, says what to install
  const std::string bare = run + "/../bare_python.sh";
  test::write_text(bare, "#!/bin/sh\necho '{\"missing\": \"No module named onnxruntime\"}'\nexit 3\n");
  fs::permissions(bare, fs::perms::owner_all);
  auto none = test::run_process("SCULPT_PYTHON=" + bare + " " + SCULPT_BIN + " export " + run + " --format onnx");
  CHECK(none.exit_code == 2);
  CHECK(none.err.find("onnxruntime") != std::string::npos);
  CHECK_FALSE(fs::exists(run + "/export-onnx"));
  // --no-verify writes without Python
  auto nv = test::run_process("SCULPT_PYTHON=" + bare + " " + SCULPT_BIN + " export " + run +
                              " --format onnx --no-verify");
  CHECK(nv.exit_code == 0);
  CHECK(fs::exists(run + "/export-onnx/model.onnx"));
  // the list of formats names onnx
  auto unknown = test::run_process(std::string(SCULPT_BIN) + " export " + run + " --format tflite");
  CHECK(unknown.exit_code == 2);
  CHECK(unknown.err.find("onnx") != std::string::npos);
}

TEST_CASE("export onnx: a layer ONNX cannot express is refused, naming the layer and why", "[onnx]") {
  // an mlp whose hidden block holds a module the writer has no translation for
  auto m = std::make_unique<models::Model>("mlp");
  torch::nn::Sequential flat, hidden;
  flat->push_back(torch::nn::Flatten());
  hidden->push_back(std::make_shared<nn::Linear>(16, 8));
  hidden->push_back(torch::nn::Softplus());
  m->add_block("flatten", std::make_shared<models::SequentialBlock>(flat));
  m->add_block("hidden0", std::make_shared<models::SequentialBlock>(hidden));
  config::Config cfg;
  cfg.model.name = "mlp";
  data::DataSpec spec;
  spec.input_shape = {16};
  spec.num_classes = 8;
  const std::string dir = test::temp_dir("onnx_refuse");
  try {
    compression::write_onnx_export(*m, cfg, spec, "", dir + "/model.onnx");
    FAIL("no error");
  } catch (const UserError& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(what.find("hidden0.seq.1") != std::string::npos);
    CHECK(what.find("no ONNX translation") != std::string::npos);
  }
  CHECK_FALSE(fs::exists(dir + "/model.onnx"));
}
