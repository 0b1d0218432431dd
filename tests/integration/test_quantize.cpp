// The quantize pass through `sculpt`: QAT and PTQ runs export an integer model that the run
// verifies against the fake-quant model and `sculpt eval --quantized` runs with int8 GEMMs;
// BN folding on a ResNet; packed 4-bit exports; bad settings exit 2 naming the key or layer;
// the pass conformance suite.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <nlohmann/json.hpp>

#include "tests/support/pass_conformance.h"
#include "tests/support/process.h"

using sculpt::test::run_process;
namespace fs = std::filesystem;

namespace {
const std::string kSculpt = SCULPT_BIN;

std::string blobs_config(const std::string& dir, const std::string& name,
                         const std::string& trainer, const std::string& recipe) {
  const std::string path = dir + "/" + name + ".yaml";
  sculpt::test::write_text(
      path, "run: {name: " + name + ", output_dir: " + dir + "/" + name +
                ", device: cpu, seed: 3}\n"
                "model: {name: mlp, hidden: [32, 16]}\n"
                "data: {name: synthetic_blobs, samples: 600, features: 8, classes: 3, "
                "batch_size: 32}\n"
                "trainer: " + trainer + "\n"
                "compression: " + recipe + "\n");
  return path;
}

nlohmann::json quant_summary(const std::string& run_dir) {
  auto s = nlohmann::json::parse(sculpt::test::read_text(run_dir + "/summary.json"));
  for (const auto& item : s.at("compression"))
    if (item.at("pass") == "quantize") return item.at("summary");
  FAIL("no quantize summary in " << run_dir);
  return {};
}

nlohmann::json eval_quantized(const std::string& config) {
  auto r = run_process(kSculpt + " eval " + config + " --quantized --log-level warn");
  REQUIRE(r.exit_code == 0);
  return nlohmann::json::parse(r.out);
}
}  // namespace

TEST_CASE("QAT exports a verified int8 model that sculpt eval --quantized runs",
          "[quantize][cli]") {
  const std::string dir = sculpt::test::temp_dir("quant-qat");
  const auto cfg = blobs_config(dir, "qat", "{epochs: 3, tensorboard: false}",
                                "[{name: quantize, freeze_observers_at: 2e}]");
  auto r = run_process(kSculpt + " train " + cfg + " --log-level info");
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.err + r.out, Catch::Contains("export verified"));
  const auto s = quant_summary(dir + "/qat");
  CHECK(s.at("verify_max_abs_diff").get<double>() <= s.at("verify_tolerance").get<double>());
  REQUIRE(s.at("layers").size() == 3);
  for (const auto& l : s.at("layers")) {
    CHECK(l.at("weight") == "int8 sym per_channel(axis 0)");
    CHECK(l.at("act") == "int8 asym per_tensor");
    CHECK(l.at("weight_snr_db").get<double>() > 30.0);  // 8 bits: ~6 dB per bit, minus clipping
    // Inputs: frozen at 2e, the head's input range grows in the last epoch and clips (~13 dB).
    CHECK(l.at("act_snr_db").get<double>() > 10.0);
  }
  REQUIRE(fs::exists(dir + "/qat/quantized/model.safetensors"));
  REQUIRE(fs::exists(dir + "/qat/quantized/manifest.json"));
  // The integer model's accuracy is the fake-quant model's (the run's final metrics).
  const auto e = eval_quantized(cfg);
  const auto summary = nlohmann::json::parse(sculpt::test::read_text(dir + "/qat/summary.json"));
  CHECK(e.at("val").at("accuracy").get<double>() ==
        Approx(summary.at("final").at("val").at("accuracy").get<double>()).margin(0.02));
  CHECK(e.at("val").at("accuracy").get<double>() > 0.8);
  // A tiny model: the safetensors header weighs in; bench/ measures real models.
  CHECK(e.at("bytes").at("ratio").get<double>() < 0.9);
  // Float evaluation of the same run still works: model.safetensors holds plain weights.
  CHECK(run_process(kSculpt + " eval " + cfg + " --log-level warn").exit_code == 0);
}

TEST_CASE("PTQ calibrates a trained model without training; 4-bit weights are packed",
          "[quantize][cli]") {
  const std::string dir = sculpt::test::temp_dir("quant-ptq");
  REQUIRE(run_process(kSculpt + " train " +
                      blobs_config(dir, "fp", "{epochs: 3, tensorboard: false}", "[]") +
                      " --log-level warn")
              .exit_code == 0);
  const std::string init = "[{name: quantize, mode: ptq, calibration_batches: 4";
  auto make = [&](const std::string& name, const std::string& extra) {
    auto path = blobs_config(dir, name, "{epochs: 0, tensorboard: false}", init + extra + "}]");
    sculpt::test::write_text(path, sculpt::test::read_text(path) + "model: {name: mlp, hidden: "
                                                                   "[32, 16], init: " +
                                       dir + "/fp}\n");
    return path;
  };
  const auto p8 = make("ptq8", "");
  const auto p4 = make("ptq4", ", weight_bits: 4");
  for (const auto& p : {p8, p4}) REQUIRE(run_process(kSculpt + " train " + p + " --log-level warn").exit_code == 0);
  const auto s8 = quant_summary(dir + "/ptq8"), s4 = quant_summary(dir + "/ptq4");
  CHECK(s8.at("steps") == 0);
  CHECK(s4.at("quantized_bytes").get<int64_t>() < s8.at("quantized_bytes").get<int64_t>());
  const auto m4 = nlohmann::json::parse(sculpt::test::read_text(dir + "/ptq4/quantized/manifest.json"));
  CHECK(m4.at("layers").at("hidden0.seq.0").at("packed") == "int4");
  const auto fp = nlohmann::json::parse(sculpt::test::read_text(dir + "/fp/summary.json"));
  const double fp_acc = fp.at("final").at("val").at("accuracy").get<double>();
  CHECK(eval_quantized(p8).at("val").at("accuracy").get<double>() == Approx(fp_acc).margin(0.03));
  CHECK(eval_quantized(p4).at("val").at("accuracy").get<double>() > 0.5);
}

TEST_CASE("BatchNorm folds into ResNet convs and the folded int8 model verifies",
          "[quantize][cli]") {
  const std::string dir = sculpt::test::temp_dir("quant-bn");
  const std::string path = dir + "/rn.yaml";
  sculpt::test::write_text(
      path, "run: {name: rn, output_dir: " + dir + "/rn, device: cpu, seed: 1}\n"
            "model: {name: resnet, depth: 8, width: 0.25}\n"
            "data: {name: synthetic_images, samples: 400, size: 12, classes: 4, batch_size: 32}\n"
            "optimizer: {name: sgd, lr: 0.02, momentum: 0.9}\n"
            "trainer: {epochs: 2, tensorboard: false, grad_clip_norm: 1.0}\n"
            "compression: [{name: quantize, freeze_bn_at: 1e, lsq: true}]\n");
  auto r = run_process(kSculpt + " train " + path + " --log-level info");
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.err + r.out, Catch::Contains("BatchNorm frozen and folded"));
  const auto s = quant_summary(dir + "/rn");
  int folded = 0;
  for (const auto& l : s.at("layers")) folded += l.at("bn_folded").get<bool>();
  CHECK(folded == 9);  // stem + 3 blocks x 2 convs + 2 shortcut convs; the head is a Linear
  CHECK(s.at("verify_max_abs_diff").get<double>() <= s.at("verify_tolerance").get<double>());
  const auto m = nlohmann::json::parse(sculpt::test::read_text(dir + "/rn/quantized/manifest.json"));
  CHECK(m.at("layers").at("stem.conv").at("folded_norm") == "stem.bn");
  const auto e = eval_quantized(path);
  const auto summary = nlohmann::json::parse(sculpt::test::read_text(dir + "/rn/summary.json"));
  CHECK(e.at("val").at("accuracy").get<double>() ==
        Approx(summary.at("final").at("val").at("accuracy").get<double>()).margin(0.03));
}

TEST_CASE("bad quantization settings exit 2 naming the key or the layer", "[quantize][cli]") {
  const std::string dir = sculpt::test::temp_dir("quant-bad");
  const std::string steps = "{max_steps: 6, tensorboard: false}";
  auto bits = run_process(kSculpt + " validate " +
                          blobs_config(dir, "b1", steps, "[{name: quantize, weight_bits: 9}]"));
  CHECK(bits.exit_code == 2);
  CHECK_THAT(bits.err, Catch::Contains("compression[0].weight_bits") && Catch::Contains(":5:"));
  auto group = run_process(kSculpt + " train " +
                           blobs_config(dir, "b2", steps,
                                        "[{name: quantize, weight_granularity: per_group, "
                                        "group_size: 5}]"));
  CHECK(group.exit_code == 2);
  CHECK_THAT(group.err, Catch::Contains("layer hidden0.seq.0") &&
                            Catch::Contains("group_size 5 does not divide the input dimension 8"));
  auto axis = run_process(kSculpt + " train " +
                          blobs_config(dir, "b3", steps,
                                       "[{name: quantize, weight_axis: 2}]"));
  CHECK(axis.exit_code == 2);
  CHECK_THAT(axis.err, Catch::Contains("axis 2 is beyond the tensor's rank"));
  auto early = run_process(kSculpt + " train " +
                           blobs_config(dir, "b4", steps, "[{name: quantize, warmup: 100}]"));
  CHECK(early.exit_code == 2);
  CHECK_THAT(early.err, Catch::Contains("exporting before its input observer has seen data"));
  auto qat0 = run_process(kSculpt + " train " +
                          blobs_config(dir, "b5", "{epochs: 0, tensorboard: false}",
                                       "[{name: quantize}]"));
  CHECK(qat0.exit_code == 2);
  CHECK_THAT(qat0.err, Catch::Contains("mode qat needs training steps"));
  auto none = run_process(kSculpt + " eval " + blobs_config(dir, "b6", steps, "[]") +
                          " --quantized " + dir + "/nowhere");
  CHECK(none.exit_code == 2);
  CHECK_THAT(none.err, Catch::Contains("not a quantized export"));
}

TEST_CASE("quantize passes the pass conformance suite", "[passes][conformance][quantize]") {
  sculpt::test::run_pass_conformance("{name: quantize, freeze_observers_at: 6, lsq: true}");
}

TEST_CASE("quantize with PACT and a histogram observer passes the conformance suite",
          "[passes][conformance][quantize]") {
  sculpt::test::run_pass_conformance(
      "{name: quantize, pact: true, weight_bits: 4, weight_observer: mse, "
      "overrides: [{layers: 'head.*', act_bits: 8, pact: false, act_observer: percentile}]}");
}

TEST_CASE("quant-sensitivity reports each layer's drop and writes rules that meet a budget",
          "[quantize][cli]") {
  const std::string dir = sculpt::test::temp_dir("quant-sens");
  const auto cfg = blobs_config(dir, "fp", "{epochs: 3, tensorboard: false}",
                                "[{name: quantize, weight_bits: 2}]");
  // Train float first (the quantize item only sets the bits for the tool).
  REQUIRE(run_process(kSculpt + " train " + cfg + " compression=[] --log-level warn").exit_code == 0);
  const std::string rules = dir + "/rules.yaml";
  auto r = run_process(kSculpt + " quant-sensitivity " + cfg + " --budget 0.2 --write-rules " +
                       rules + " --log-level warn");
  REQUIRE(r.exit_code == 0);
  for (const char* layer : {"hidden0.seq.0", "hidden1.seq.0", "head.seq.0"})
    CHECK_THAT(r.out, Catch::Contains(layer));
  CHECK_THAT(r.out, Catch::Contains("int2 sym per_channel"));
  // Weights 8x32 + 32x16 + 16x3 = 816 elements: 3264 FP32 bytes, budget 652; all at 2 bits
  // take 204, all at 8 bits 816: some layers, not all, stay at 8 bits.
  const std::string text = sculpt::test::read_text(rules);
  REQUIRE_THAT(text, Catch::Contains("overrides:"));
  const auto kept = std::count(text.begin(), text.end(), '{');
  CHECK(kept >= 1);
  CHECK(kept <= 2);
  // The rules paste under the quantize item and the recipe validates.
  std::string item = "[{name: quantize, weight_bits: 2, overrides: [";
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.find("- {") != std::string::npos) item += line.substr(line.find('{')) + ",";
  item.back() = ']';
  item += "}]";
  CHECK(run_process(kSculpt + " validate " + blobs_config(dir, "ruled", "{epochs: 1}", item))
            .exit_code == 0);
  auto bad = run_process(kSculpt + " quant-sensitivity " + cfg + " --budget 0.01");
  CHECK(bad.exit_code == 2);
  CHECK_THAT(bad.err, Catch::Contains("over the budget"));
}

TEST_CASE("a pruned int8 export stores bitmask + values, smaller, and evaluates the same",
          "[quantize][prune][cli]") {
  const std::string dir = sculpt::test::temp_dir("quant-sparse");
  const std::string prune =
      "{name: prune, pattern: unstructured, sparsity: 0.9, schedule: agp, start: 10, end: 40, "
      "every: 10}";
  const auto dense = blobs_config(dir, "dense", "{epochs: 4, tensorboard: false}",
                                  "[{name: quantize, freeze_observers_at: 3e}]");
  const auto sparse = blobs_config(dir, "sparse", "{epochs: 4, tensorboard: false}",
                                   "[" + prune + ", {name: quantize, freeze_observers_at: 3e}]");
  for (const auto& cfg : {dense, sparse}) {  // big enough that the weights outweigh the headers
    auto text = sculpt::test::read_text(cfg);
    text.replace(text.find("hidden: [32, 16]"), 16, "hidden: [256, 128]");
    text.replace(text.find("features: 8,"), 12, "features: 64,");
    sculpt::test::write_text(cfg, text);
    REQUIRE(run_process(kSculpt + " train " + cfg + " --log-level warn").exit_code == 0);
  }
  const auto md = nlohmann::json::parse(sculpt::test::read_text(dir + "/dense/quantized/manifest.json"));
  const auto ms = nlohmann::json::parse(sculpt::test::read_text(dir + "/sparse/quantized/manifest.json"));
  int sparse_layers = 0;
  for (const auto& [name, l] : ms.at("layers").items()) {
    INFO(name);
    CHECK_FALSE(md.at("layers").at(name).contains("sparse"));  // a dense weight stays dense
    if (!l.contains("sparse")) continue;
    ++sparse_layers;
    CHECK(l.at("sparse").at("format") == "bitmask");
    int64_t n = 1;
    for (auto d : l.at("shape")) n *= d.get<int64_t>();
    // 90% pruned: about a tenth of the values remain (masked weights sit on the grid's zero).
    CHECK(l.at("sparse").at("nnz").get<int64_t>() <= n / 8);
  }
  CHECK(sparse_layers >= 2);  // the 64x256 and 256x128 layers; the 128x3 head may stay dense
  // Dense int8: 49,536 bytes of weights. 10% of them plus a bit each: about a quarter.
  CHECK(ms.at("bytes").get<int64_t>() < md.at("bytes").get<int64_t>() * 35 / 100);
  // The run verified its export against the fake-quant model, and eval reads it back.
  const auto s = quant_summary(dir + "/sparse");
  CHECK(s.at("verify_max_abs_diff").get<double>() <= s.at("verify_tolerance").get<double>());
  const auto summary = nlohmann::json::parse(sculpt::test::read_text(dir + "/sparse/summary.json"));
  CHECK(eval_quantized(sparse).at("val").at("accuracy").get<double>() ==
        Approx(summary.at("final").at("val").at("accuracy").get<double>()).margin(0.02));
}
