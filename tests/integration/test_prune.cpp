// The prune pass through real fits: the conformance suite (hooks in order, exact resume in the
// middle of the schedule with masks, scores and the curve restored) for each pattern, scorer and
// schedule family.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "core/io/safetensors.h"
#include "tests/support/pass_conformance.h"
#include "tests/support/process.h"

TEST_CASE("prune (agp, unstructured, magnitude) passes the conformance suite",
          "[passes][conformance][prune]") {
  sculpt::test::run_pass_conformance(
      "{name: prune, schedule: agp, sparsity: 0.8, start: 1, end: 7, every: 2}");
}

TEST_CASE("prune (n:m, blocks, heads, taylor, movement and fisher scores) passes the conformance suite",
          "[passes][conformance][prune]") {
  sculpt::test::run_pass_conformance(
      "{name: prune, pattern: 'n:m', schedule: one_shot, start: 3, scorer: taylor, "
      "overrides: [{layers: 'hidden1.*', pattern: block, block: 4, scorer: movement, "
      "schedule: exponential, sparsity: 0.5, start: 2, end: 6, every: 1}, "
      "{layers: 'head.*', pattern: head, heads: 4, sparsity: 0.5, start: 2, scorer: fisher}]}");
}

TEST_CASE("prune (rigl, global budget) passes the conformance suite",
          "[passes][conformance][prune]") {
  sculpt::test::run_pass_conformance(
      "{name: prune, schedule: rigl, sparsity: 0.7, start: 0, end: 7, every: 2, group: all, "
      "max_sparsity: 0.9, exclude: ['head.*']}");
}

TEST_CASE("prune (iterative channels, removed at the end) passes the conformance suite",
          "[passes][conformance][prune]") {
  sculpt::test::run_pass_conformance(
      "{name: prune, pattern: channel, schedule: iterative, cycles: 2, sparsity: 0.5, start: 1, "
      "end: 5, include: ['hidden.*']}");
}

TEST_CASE("lora passes the conformance suite", "[passes][conformance][lora]") {
  sculpt::test::run_pass_conformance("{name: lora, rank: 2, alpha: 4, dropout: 0.1}");
}

TEST_CASE("lowrank passes the conformance suite", "[passes][conformance][lowrank]") {
  sculpt::test::run_pass_conformance("{name: lowrank, energy: 0.7, exclude: ['head.*']}");
}

namespace {
// `sculpt <command> <cfg>`, which must succeed.
sculpt::test::ProcessResult sculpt_ok(const std::string& command, const std::string& cfg) {
  auto r = sculpt::test::run_process(std::string(SCULPT_BIN) + " " + command + " " + cfg);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return r;
}

// A trained tiny run with `pass` (one compression item) in `dir`; its config path.
std::string train_tiny(const std::string& dir, const std::string& pass) {
  const std::string path = dir + "/run.yaml";
  sculpt::test::write_text(
      path, "run: {name: prune, output_dir: " + dir +
                "/out, device: cpu, seed: 2}\n"
                "model: {name: mlp, hidden: [32, 32]}\n"
                "data: {name: synthetic_blobs, samples: 512, features: 16, classes: 4, "
                "batch_size: 32}\n"
                "trainer: {max_steps: 60, log_every: 20, tensorboard: false}\n"
                "compression: [" +
                pass + "]\n");
  sculpt_ok("train", path);
  return path;
}

double summary_val_accuracy(const std::string& dir) {
  auto s = nlohmann::json::parse(sculpt::test::read_text(dir + "/out/summary.json"));
  return s["final"]["val"]["accuracy"].get<double>();
}
}  // namespace

TEST_CASE("sculpt eval loads a channel-removed model and runs block-sparse layers",
          "[prune][cli]") {
  SECTION("channels: the weights file is smaller and evaluates like the run's final model") {
    const std::string dir = sculpt::test::temp_dir("prune-eval-channels");
    const auto cfg = train_tiny(dir,
                                "{name: prune, pattern: channel, schedule: agp, sparsity: 0.5, "
                                "start: 5, end: 40, every: 5, include: ['hidden.*']}");
    const auto weights = sculpt::io::load_safetensors(dir + "/out/model.safetensors");
    for (const auto& [name, t] : weights)
      if (name == "hidden0.seq.0.weight") CHECK(t.sizes() == torch::IntArrayRef({16, 16}));
    auto m = nlohmann::json::parse(sculpt_ok("eval", cfg).out);
    CHECK(m["val"]["accuracy"].get<double>() == summary_val_accuracy(dir));
    // The planned vs actual sparsity as charts in report.html.
    const auto html = sculpt::test::read_text(dir + "/out/report.html");
    CHECK_THAT(html, Catch::Contains("prune planned sparsity"));
    CHECK_THAT(html, Catch::Contains("prune actual sparsity"));
  }
  SECTION("blocks: BSR runtimes in eval, named in the log") {
    const std::string dir = sculpt::test::temp_dir("prune-eval-blocks");
    const auto cfg = train_tiny(dir,
                                "{name: prune, pattern: block, block: 8, runtime: bsr, "
                                "sparsity: 0.75, start: 5, end: 40, every: 5, "
                                "include: ['hidden.*']}");
    auto r = sculpt_ok("eval", cfg);
    CHECK_THAT(r.err, Catch::Contains("prune: hidden1.seq.0 runs block-sparse: BSR 8x8"));
    auto m = nlohmann::json::parse(r.out);
    CHECK(m["val"]["accuracy"].get<double>() == Approx(summary_val_accuracy(dir)).margin(1e-9));
    auto s = nlohmann::json::parse(sculpt::test::read_text(dir + "/out/summary.json"));
    CHECK(s["compression"][0]["summary"]["runtimes"].contains("hidden0.seq.0"));
  }
  SECTION("validate --explain prints each layer's planned sparsity") {
    const std::string dir = sculpt::test::temp_dir("prune-explain");
    const std::string path = dir + "/run.yaml";
    sculpt::test::write_text(path,
                             "model: {name: mlp, hidden: [32]}\n"
                             "data: {name: synthetic_blobs, features: 16, classes: 4}\n"
                             "compression: [{name: prune, sparsity: 0.9, start: 100, end: 500, "
                             "every: 100, overrides: [{layers: 'head.*', pattern: 'n:m'}]}]\n");
    auto r = sculpt_ok("validate --explain", path);
    CHECK_THAT(r.out, Catch::Contains("hidden0.seq.0 [32, 16]: unstructured, magnitude, agp to "
                                      "0.9; planned sparsity: s(0)=0 s(100)=0 s(300)=0.788 "
                                      "s(500)=0.9\n"));
    CHECK_THAT(r.out, Catch::Contains("head.seq.0 [4, 32]: 2:4, magnitude, agp to 0.5"));
  }
}

TEST_CASE("the sparse export: BSR and bitmask layers, smaller, and sculpt eval --sparse matches",
          "[prune][cli]") {
  const std::string dir = sculpt::test::temp_dir("prune-sparse-export");
  // Blocks on the hidden layers, unstructured on the head.
  const auto cfg = train_tiny(dir,
                              "{name: prune, pattern: block, block: 8, sparsity: 0.75, start: 5, "
                              "end: 40, every: 5, overrides: [{layers: 'head.*', pattern: "
                              "unstructured, sparsity: 0.8}]}");
  const auto manifest =
      nlohmann::json::parse(sculpt::test::read_text(dir + "/out/sparse/manifest.json"));
  const auto& layers = manifest.at("layers");
  REQUIRE(layers.contains("hidden1.seq.0"));
  CHECK(layers.at("hidden1.seq.0").at("storage") == "bsr");
  CHECK(layers.at("hidden1.seq.0").at("blocks") == 4);  // a quarter of the 4 x 4 blocks
  REQUIRE(layers.contains("head.seq.0"));
  CHECK(layers.at("head.seq.0").at("storage") == "bitmask");
  CHECK(layers.at("head.seq.0").at("nnz").get<int64_t>() <= 4 * 32 / 5 + 1);
  // Smaller than the dense weights file of the same run.
  CHECK(manifest.at("bytes").get<int64_t>() <
        static_cast<int64_t>(std::filesystem::file_size(dir + "/out/model.safetensors")) * 3 / 4);
  // The file holds no dense copy of the sparse weights.
  for (const auto& [name, t] : sculpt::io::load_safetensors(dir + "/out/sparse/model.safetensors"))
    CHECK(name != "hidden1.seq.0.weight");
  // Evaluated from the export: the same metrics as from the dense file, the BSR layers on the
  // block-sparse kernel, the bitmask one dense, each said in the log.
  auto dense = nlohmann::json::parse(sculpt_ok("eval", cfg).out);
  auto r = sculpt_ok("eval --sparse", cfg);
  CHECK_THAT(r.err, Catch::Contains("sparse: hidden1.seq.0 runs block-sparse"));
  CHECK_THAT(r.err, Catch::Contains("sparse: head.seq.0: stored as a bitmask"));
  auto sparse = nlohmann::json::parse(r.out);
  for (const char* split : {"train", "val"}) {
    INFO(split);
    CHECK(sparse[split]["accuracy"] == dense[split]["accuracy"]);
    CHECK(sparse[split]["loss"].get<double>() ==
          Approx(dense[split]["loss"].get<double>()).margin(1e-5));
  }
  CHECK(sparse["bytes"]["ratio"].get<double>() < 0.75);
  // A damaged export is an error naming the file, exit code 2.
  sculpt::test::write_text(dir + "/out/sparse/manifest.json", "{\"format\": \"other\"}");
  auto bad = sculpt::test::run_process(std::string(SCULPT_BIN) + " eval --sparse " + cfg);
  CHECK(bad.exit_code == 2);
  CHECK_THAT(bad.err, Catch::Contains("sparse/manifest.json: format is not sculpt-sparse"));
}
