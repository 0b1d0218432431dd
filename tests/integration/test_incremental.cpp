// The incremental trainer through the `sculpt` executable on the real 8x8 digits: the accuracy
// matrix and its metrics in summary.json, metrics.jsonl and report.html; resuming from a
// checkpoint in the middle of increment 3 gives the uninterrupted matrix and weights exactly;
// two runs chained with incremental.resume_from give what one run over all increments gives;
// class- and task-incremental splits.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/io/safetensors.h"
#include "tests/support/pass_conformance.h"
#include "tests/support/process.h"

using sculpt::test::run_process;
namespace fs = std::filesystem;

namespace {
const std::string kSculpt = SCULPT_BIN;
const std::string kDigits = std::string(SCULPT_SHARED_DATA) + "/digits/digits.csv.gz";

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

// Permuted digits: `n` increments, the continual passes (EWC, replay, LwF), checkpoints every 10
// steps (all kept).
// These tests train on the real digits file; without ../shared/data they are skipped, visibly.
void need_digits() {
  if (!fs::exists(kDigits)) sculpt::test::skip_test(kDigits + " absent");
}

std::string permuted_config(const std::string& dir, const std::string& name, int n,
                            const std::string& extra = "") {
  need_digits();
  std::string incs;
  for (int i = 0; i < n; ++i)
    incs += std::string(i ? ", " : "") + "{name: p" + std::to_string(i) +
            ", permute_pixels: {seed: " + std::to_string(i + 1) + "}}";
  const std::string path = dir + "/" + name + ".yaml";
  sculpt::test::write_text(
      path,
      "run: {name: " + name + ", output_dir: " + dir + "/" + name + ", device: cpu, seed: 3}\n"
      "model: {name: mlp, hidden: [48], dropout: 0.1}\n"
      "data: {name: digits, file: " + kDigits + ", batch_size: 32, val_fraction: 0.2}\n"
      "optimizer: {name: sgd, lr: 0.1, momentum: 0.9}\n"
      "trainer: {name: incremental, epochs: 2, log_every: 5, checkpoint_every: 10, "
      "keep_checkpoints: 100, tensorboard: false}\n"
      "compression: [{name: ewc, lambda: 20, samples: 100}, {name: replay, buffer: 200, "
      "batch_size: 16}, {name: lwf, alpha: 0.5}]\n"
      "increments: [" + incs + "]\n" + extra);
  return path;
}

// An MLP [32] on the digits with SGD 0.1, momentum 0.9, batch 32, and `rest` (trainer,
// increments, passes) appended: dir/name.yaml, running into dir/name.
std::string digits_mlp_config(const std::string& dir, const std::string& name,
                              const std::string& rest) {
  need_digits();
  const std::string path = dir + "/" + name + ".yaml";
  sculpt::test::write_text(
      path, "run: {name: " + name + ", output_dir: " + dir + "/" + name + ", device: cpu, seed: 1}\n"
                "model: {name: mlp, hidden: [32]}\n"
                "data: {name: digits, file: " + kDigits + ", batch_size: 32}\n"
                "optimizer: {name: sgd, lr: 0.1, momentum: 0.9}\n" + rest);
  return path;
}

bool train(const std::string& cfg, const std::string& overrides = "") {
  auto r = run_process(kSculpt + " train " + cfg + " " + overrides + " --log-level warn");
  INFO(r.err);
  return r.exit_code == 0;
}
}  // namespace

TEST_CASE("the incremental trainer writes the accuracy matrix and GEM metrics",
          "[continual][incremental]") {
  const std::string dir = sculpt::test::temp_dir("incremental");
  REQUIRE(train(permuted_config(dir, "a", 3)));
  const auto s = read_json(fs::path(dir) / "a" / "summary.json");
  REQUIRE(s.contains("continual"));
  const auto& c = s["continual"];
  CHECK(c["scenario"] == "domain_incremental");
  CHECK(c["increments"] == nlohmann::json({"p0", "p1", "p2"}));
  const auto& m = c["accuracy_matrix"];
  REQUIRE(m.size() == 3);
  // Row i holds every increment seen and the next one (FWT), nothing later.
  CHECK(m[0][0].is_number());
  CHECK(m[0][1].is_number());
  CHECK(m[0][2].is_null());
  for (int j = 0; j < 3; ++j) CHECK(m[2][j].is_number());
  CHECK(m[2][2].get<double>() > 0.5);  // learned (chance: 0.1) despite three regularizers
  const double acc =
      (m[2][0].get<double>() + m[2][1].get<double>() + m[2][2].get<double>()) / 3;
  CHECK(c["average_accuracy"].get<double>() == Approx(acc));
  for (const char* k : {"bwt", "fwt", "forgetting", "forgetting_from_best"})
    CHECK(c[k].is_number());
  CHECK(c["initial_accuracy"].size() == 3);
  // The passes' summaries: EWC counted its increments, replay filled its buffer and replayed.
  CHECK(s["compression"][0]["summary"]["increments"] == 3);
  CHECK(s["compression"][1]["summary"]["buffer"] == 200);
  CHECK(s["compression"][1]["summary"]["replayed"].get<int64_t>() > 0);
  CHECK(s["compression"][2]["summary"]["has_teacher"] == true);
  CHECK(fs::exists(fs::path(dir) / "a" / "replay_buffer.safetensors"));
  CHECK(read_json(fs::path(dir) / "a" / "replay_buffer.json")["seen"] == 3 * 1438);
  // One "continual" record per increment in metrics.jsonl, and the heatmap in report.html.
  std::ifstream in(fs::path(dir) / "a" / "metrics.jsonl");
  std::string line;
  int records = 0;
  while (std::getline(in, line))
    if (nlohmann::json::parse(line)["split"] == "continual") ++records;
  CHECK(records == 3);
  std::ifstream html(fs::path(dir) / "a" / "report.html");
  std::string page((std::istreambuf_iterator<char>(html)), {});
  CHECK_THAT(page, Catch::Contains("Continual learning"));
  CHECK_THAT(page, Catch::Contains("hsl("));
}

TEST_CASE("resuming in the middle of increment 3 reproduces the uninterrupted matrix exactly",
          "[continual][incremental][resume]") {
  const std::string dir = sculpt::test::temp_dir("incremental_resume");
  REQUIRE(train(permuted_config(dir, "full", 4)));
  // 1438 train rows / 32 = 45 batches, 2 epochs: increment 2 (the third) is steps 180..270.
  const fs::path ckpt = fs::path(dir) / "full" / "checkpoints" / "step_230";
  REQUIRE(fs::exists(ckpt));
  const auto inc = read_json(ckpt / "incremental.json");
  CHECK(inc["increments_done"] == 2);
  REQUIRE(train(permuted_config(dir, "resumed", 4), "run.resume=" + ckpt.string()));
  const auto a = read_json(fs::path(dir) / "full" / "summary.json")["continual"];
  const auto b = read_json(fs::path(dir) / "resumed" / "summary.json")["continual"];
  CHECK(a["accuracy_matrix"] == b["accuracy_matrix"]);
  CHECK(a["average_accuracy"] == b["average_accuracy"]);
  const auto wa = sculpt::io::load_safetensors(dir + "/full/model.safetensors");
  const auto wb = sculpt::io::load_safetensors(dir + "/resumed/model.safetensors");
  REQUIRE(wa.size() == wb.size());
  for (size_t i = 0; i < wa.size(); ++i) CHECK(wa[i].second.equal(wb[i].second));
}

TEST_CASE("two runs chained with incremental.resume_from equal one run over all increments",
          "[continual][incremental][resume_from]") {
  const std::string dir = sculpt::test::temp_dir("incremental_chain");
  REQUIRE(train(permuted_config(dir, "one", 3)));
  REQUIRE(train(permuted_config(dir, "first", 2)));
  REQUIRE(train(permuted_config(dir, "second", 3,
                                "incremental: {resume_from: " + dir + "/first}\n")));
  const auto one = read_json(fs::path(dir) / "one" / "summary.json")["continual"];
  const auto two = read_json(fs::path(dir) / "second" / "summary.json")["continual"];
  CHECK(one["accuracy_matrix"] == two["accuracy_matrix"]);
  CHECK(one["bwt"] == two["bwt"]);
  CHECK(one["fwt"] == two["fwt"]);
  const auto wa = sculpt::io::load_safetensors(dir + "/one/model.safetensors");
  const auto wb = sculpt::io::load_safetensors(dir + "/second/model.safetensors");
  for (size_t i = 0; i < wa.size(); ++i) CHECK(wa[i].second.equal(wb[i].second));

  // A sequence that does not start with the earlier run's increments is refused.
  const std::string bad = permuted_config(dir, "bad", 3,
                                          "incremental: {resume_from: " + dir + "/first}\n");
  auto r = run_process(kSculpt + " train " + bad + " increments[0].permute_pixels.seed=9");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("increment 0 was trained on"));

  // Another optimizer cannot take the earlier run's optimizer state: exit 2 naming the file.
  std::ifstream in(permuted_config(dir, "adam", 3, "incremental: {resume_from: " + dir + "/first}\n"));
  std::string text((std::istreambuf_iterator<char>(in)), {});
  const std::string sgd = "optimizer: {name: sgd, lr: 0.1, momentum: 0.9}";
  REQUIRE(text.find(sgd) != std::string::npos);
  text.replace(text.find(sgd), sgd.size(), "optimizer: {name: adamw, lr: 0.01}");
  sculpt::test::write_text(dir + "/adam.yaml", text);
  r = run_process(kSculpt + " train " + dir + "/adam.yaml");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("optimizer.pt: cannot restore the optimizer state"));
  CHECK_THAT(r.err, Catch::Contains("the same optimizer.name"));
}

TEST_CASE("class- and task-incremental splits of the digits", "[continual][incremental]") {
  need_digits();
  const std::string dir = sculpt::test::temp_dir("incremental_split");
  for (const std::string scenario : {"class_incremental", "task_incremental"}) {
    const std::string path = digits_mlp_config(
        dir, scenario,
        "trainer: {name: incremental, epochs: 6, tensorboard: false}\n"
        "incremental: {scenario: " + scenario + "}\n"
        "increments: [{classes: [0, 1, 2, 3, 4]}, {classes: [5, 6, 7, 8, 9]}]\n");
    REQUIRE(train(path));
    const auto c = read_json(fs::path(dir) / scenario / "summary.json")["continual"];
    const auto& m = c["accuracy_matrix"];
    INFO(scenario << " " << m.dump());
    CHECK(m[1][1].get<double>() > 0.8);
    if (scenario == "class_incremental") {
      // Plain fine-tuning on new classes forgets the old ones almost entirely.
      CHECK(m[1][0].get<double>() < 0.5);
    } else {
      // Masked logits: the old task is still told apart within its own classes.
      CHECK(m[1][0].get<double>() > 0.5);
    }
  }
}

TEST_CASE("ewc warns when lr * lambda * Fisher passes plain SGD's stability limit",
          "[continual][incremental]") {
  need_digits();
  const std::string dir = sculpt::test::temp_dir("incremental_ewc_limit");
  auto run_with = [&](const std::string& name, double lambda) {
    const std::string path = digits_mlp_config(
        dir, name,
        "trainer: {name: incremental, epochs: 2, tensorboard: false}\n"
        "incremental: {scenario: task_incremental}\n"
        "compression: [{name: ewc, mode: separate, lambda: " + std::to_string(lambda) +
            ", samples: 200}]\n"
        "increments: [{classes: [0, 1, 2]}, {classes: [3, 4, 5]}, {classes: [6, 7]}]\n");
    return run_process(kSculpt + " train " + path + " --log-level warn");
  };
  // With lr 0.1 and momentum 0.9 the limit is lr * lambda * max F = 3.8.
  const auto stiff = run_with("stiff", 1e5);
  INFO(stiff.err);
  CHECK_THAT(stiff.err, Catch::Contains("past plain SGD's stability limit 2 (1 + momentum) = 3.8"));
  CHECK_THAT(stiff.err, Catch::Contains("with separate penalties training will likely diverge"));
  const auto mild = run_with("mild", 0.01);
  INFO(mild.err);
  CHECK(mild.exit_code == 0);
  CHECK(mild.err.find("stability limit") == std::string::npos);
}

// In a standard run there is no increment end: the continual passes must still keep every rule
// of a pass (hooks, exact resume, summary).
TEST_CASE("ewc, replay and lwf pass the pass conformance suite", "[passes][conformance][continual]") {
  for (const std::string item :
       {"{name: ewc, lambda: 5, mode: separate, fisher: true, samples: 16}",
        "{name: replay, buffer: 32, policy: class_balanced, ratio: 0.5}",
        "{name: lwf, alpha: 0.5, tau: 3}"}) {
    INFO(item);
    sculpt::test::run_pass_conformance(item);
  }
}
