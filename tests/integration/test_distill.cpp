// The distill pass end to end: a Sculpt teacher run, a TorchScript teacher written by the
// venv's PyTorch, the summary, and the bad-input errors (exit 2, naming what is wrong).
#include <catch2/catch.hpp>

#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/support/process.h"

using sculpt::test::run_process;

namespace {
const std::string kSculpt = SCULPT_BIN;

const std::string kData =
    "data: {name: synthetic_blobs, samples: 1024, features: 16, classes: 4, spread: 2.5}\n";

std::string write(const std::string& dir, const std::string& name, const std::string& yaml,
                  const std::string& data = kData) {
  const std::string path = dir + "/" + name + ".yaml";
  sculpt::test::write_text(path, "run: {device: cpu, seed: 3, output_dir: " + dir + "/" + name +
                                     "}\n" + data + yaml);
  return path;
}

nlohmann::json summary(const std::string& run) {
  return nlohmann::json::parse(sculpt::test::read_text(run + "/summary.json"));
}

// A wide MLP teacher trained once for the tests of this file.
std::string teacher(const std::string& dir) {
  auto cfg = write(dir, "teacher",
                   "model: {name: mlp, hidden: [64]}\n"
                   "optimizer: {name: sgd, lr: 0.05, momentum: 0.9}\ntrainer: {epochs: 4}\n");
  REQUIRE(run_process(kSculpt + " train " + cfg + " --log-level warn").exit_code == 0);
  return dir + "/teacher";
}
}  // namespace

TEST_CASE("a student distills from a Sculpt teacher: logits, projected features, relations",
          "[distill]") {
  const std::string dir = sculpt::test::temp_dir("distill");
  const std::string t = teacher(dir);
  auto cfg = write(dir, "student",
                   "model: {name: mlp, hidden: [8]}\n"
                   "optimizer: {name: sgd, lr: 0.05, momentum: 0.9}\ntrainer: {epochs: 4}\n"
                   "compression:\n"
                   "  - name: distill\n    teachers: [" +
                       t +
                       "]\n    alpha: 0.3\n    temperature: 4\n    temperature_end: 1\n"
                       "    features: ['hidden0:hidden0']\n    relational_weight: 0.5\n");
  auto r = run_process(kSculpt + " train " + cfg + " --log-level warn");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto s = summary(dir + "/student");
  REQUIRE(s["compression"].size() == 1);
  CHECK(s["compression"][0]["pass"] == "distill");
  auto d = s["compression"][0]["summary"];
  CHECK(d["teachers"][0]["params"] == summary(t)["model"]["params"]);
  CHECK(d["student"]["params"] == s["model"]["params"]);
  CHECK(d["agreement"].get<double>() > 0.8);
  CHECK(d["temperature"].get<double>() < 1.1);  // scheduled 4 -> 1
  for (const char* term : {"kd_kl", "feature:hidden0:hidden0", "relational"})
    CHECK(d["final_terms"].contains(term));
  CHECK(s["final"]["val"]["accuracy"].get<double>() > 0.8);
  CHECK_THAT(sculpt::test::read_text(dir + "/student/report.html"),
             Catch::Contains("<h3>distill</h3>"));
}

TEST_CASE("a TorchScript teacher exported by PyTorch is distilled from", "[distill][python]") {
  const std::string python = SCULPT_TEST_PYTHON_EXE;
  if (python.empty()) {
    WARN("skipped: no Python with torch configured (SCULPT_TEST_PYTHON)");
    return;
  }
  const std::string dir = sculpt::test::temp_dir("distill-ts");
  const std::string script = dir + "/export.py";
  sculpt::test::write_text(script,
                           "import sys, torch\n"
                           "torch.manual_seed(0)\n"
                           "m = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(),\n"
                           "                        torch.nn.Linear(32, 4))\n"
                           "torch.jit.script(m).save(sys.argv[1])\n");
  auto py = run_process(python + " " + script + " " + dir + "/teacher.pt");
  if (py.exit_code != 0) {
    WARN("skipped: the venv's Python could not export TorchScript: " << py.err);
    return;
  }
  auto cfg = write(dir, "student",
                   "model: {name: mlp, hidden: [32]}\n"
                   "optimizer: {name: adam, lr: 0.01}\ntrainer: {epochs: 6}\n"
                   "compression:\n  - {name: distill, teachers: [" +
                       dir + "/teacher.pt], alpha: 0.0, temperature: 1}\n");
  auto r = run_process(kSculpt + " train " + cfg + " --log-level warn");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto d = summary(dir + "/student")["compression"][0]["summary"];
  CHECK(d["teachers"][0]["params"] == 16 * 32 + 32 + 32 * 4 + 4);
  // With alpha 0 the student learns the (random) teacher's function, not the labels.
  CHECK(d["agreement"].get<double>() > 0.8);  // chance: about 0.25
}

TEST_CASE("distill errors name the teacher, the shapes and the taps", "[distill]") {
  const std::string dir = sculpt::test::temp_dir("distill-bad");
  const std::string t = teacher(dir);
  auto run = [&](const std::string& name, const std::string& overrides, const std::string& pass) {
    auto cfg =
        write(dir, name, "model: {name: mlp, hidden: [8]}\ncompression:\n  - " + pass + "\n");
    return run_process(kSculpt + " train " + cfg + overrides);
  };
  // Three classes for the student, four for the teacher.
  auto r = run("classes", " data.classes=3", "{name: distill, teachers: [" + t + "]}");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("distill teacher " + t + ": " + t +
                                    "/model.safetensors: tensor 'head.seq.0.weight' has shape "
                                    "[4, 64] but the model expects [3, 64]"));
  CHECK_THAT(r.err, Catch::Contains("must predict the same classes"));
  // A TorchScript teacher is checked on the outputs themselves.
  sculpt::test::write_text(dir + "/export.py",
                           "import sys, torch\n"
                           "torch.jit.script(torch.nn.Linear(16, 5)).save(sys.argv[1])\n");
  const std::string python = SCULPT_TEST_PYTHON_EXE;
  if (!python.empty() &&
      run_process(python + " " + dir + "/export.py " + dir + "/five.pt").exit_code == 0) {
    r = run("five", "", "{name: distill, teachers: [" + dir + "/five.pt]}");
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::Contains(dir + "/five.pt: outputs [4, 5] but the student's are [4, 4]"));
  }
  r = run("tap", "", "{name: distill, teachers: [" + t + "], features: ['nope:hidden0']}");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("distill student tap: model mlp has no block 'nope'; its "
                                    "blocks: flatten, hidden0, head"));
  sculpt::test::write_text(dir + "/not_a_model.pt", "hello");
  r = run("file", "", "{name: distill, teachers: [" + dir + "/not_a_model.pt]}");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains(dir + "/not_a_model.pt: not a TorchScript file"));
  r = run("none", "", "{name: distill}");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("distill needs at least one teacher"));
}

TEST_CASE("an offline teacher cache gives the online teacher's losses and is never stale",
          "[distill]") {
  const std::string dir = sculpt::test::temp_dir("distill-offline");
  const std::string t = teacher(dir);
  auto losses = [&](const std::string& name, const std::string& extra) {
    auto cfg = write(dir, name,
                     "model: {name: mlp, hidden: [8]}\ntrainer: {epochs: 2, log_every: 1}\n"
                     "compression:\n  - {name: distill, teachers: [" +
                         t + "], alpha: 0.2" + extra + "}\n");
    auto r = run_process(kSculpt + " train " + cfg);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    std::vector<double> out;
    std::istringstream lines(sculpt::test::read_text(dir + "/" + name + "/metrics.jsonl"));
    for (std::string line; std::getline(lines, line);) {
      auto j = nlohmann::json::parse(line);
      if (j["split"] == "train") out.push_back(j["loss"].get<double>());
    }
    return std::make_pair(out, r.err);
  };
  auto [online, log0] = losses("online", "");
  auto [offline, log1] = losses("offline", ", offline: true");
  REQUIRE(online.size() == offline.size());
  REQUIRE(online.size() >= 30);
  for (size_t i = 0; i < online.size(); ++i) CHECK(offline[i] == Approx(online[i]).epsilon(1e-5));
  CHECK_THAT(log1, Catch::Contains("computing the teachers' outputs for"));
  // Top-k logits only: a different cache file, a slightly different (still finite) loss.
  auto [top2, log2] = losses("top2", ", offline: true, offline_top_k: 2");
  CHECK(top2.size() == online.size());
  CHECK(std::isfinite(top2.back()));
  // The same run directory again reuses its cache; other data builds a new one.
  auto cfg = dir + "/offline.yaml";
  auto again = run_process(kSculpt + " train " + cfg);
  CHECK_THAT(again.err, Catch::Contains("reusing the offline teacher outputs"));
  auto other = run_process(kSculpt + " train " + cfg + " data.samples=900");
  CHECK_THAT(other.err, Catch::Contains("computing the teachers' outputs for"));
  auto augmented = run_process(kSculpt + " train " + cfg + " data.hflip=true");
  CHECK(augmented.exit_code == 2);
}

TEST_CASE("attention maps of a transformer teacher are distilled into a smaller student",
          "[distill]") {
  const std::string dir = sculpt::test::temp_dir("distill-attention");
  const std::string images =
      "data: {name: synthetic_images, samples: 600, size: 8, classes: 4, noise: 0.3}\n";
  auto tcfg = write(dir, "vit",
                    "model: {name: transformer_encoder, d_model: 16, heads: 2, layers: 2, "
                    "patch_size: 2}\noptimizer: {name: adam, lr: 0.003}\ntrainer: {epochs: 2}\n",
                    images);
  REQUIRE(run_process(kSculpt + " train " + tcfg + " --log-level warn").exit_code == 0);
  const std::string student =
      "model: {name: transformer_encoder, d_model: 8, heads: 2, layers: 1, patch_size: 2}\n"
      "optimizer: {name: adam, lr: 0.003}\ntrainer: {epochs: 2}\n"
      "compression:\n  - {name: distill, teachers: [" +
      dir + "/vit], attention: ['layer0.layer.self_attn:layer1.layer.self_attn'], "
            "features: ['layer0:layer1']}\n";
  auto r = run_process(kSculpt + " train " + write(dir, "small", student, images) +
                       " --log-level warn");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto d = summary(dir + "/small")["compression"][0]["summary"];
  const double kl = d["final_terms"]["attention:layer0.layer.self_attn:layer1.layer.self_attn"];
  CHECK(std::isfinite(kl));
  CHECK(kl >= 0.0);
  auto bad = run_process(kSculpt + " train " + write(dir, "bad", student, images) +
                         " compression[0].attention=['layer0.attn:layer1.layer.self_attn']");
  CHECK(bad.exit_code == 2);
  CHECK_THAT(bad.err, Catch::Contains("the student has no attention module 'layer0.attn'; its "
                                      "attention modules: layer0.layer.self_attn"));
}
