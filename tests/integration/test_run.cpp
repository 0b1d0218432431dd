// A real training run as a user starts it: the run directory, reproducibility by seed, and the
// eval/inspect commands on what it wrote, including their bad-input errors.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/app.h"
#include "core/config/config.h"
#include "core/report/tensorboard.h"
#include "tests/support/process.h"

using sculpt::test::run_process;
namespace fs = std::filesystem;

namespace {
const std::string kSculpt = SCULPT_BIN;

std::string write_config(const std::string& dir, const std::string& name, int hidden = 16) {
  std::string path = dir + "/" + name + ".yaml";
  sculpt::test::write_text(path,
                           "run:\n  name: " + name + "\n  output_dir: " + dir + "/" + name +
                               "\n  device: cpu\n  seed: 7\n"
                               "model:\n  name: mlp\n  hidden: [" +
                               std::to_string(hidden) +
                               "]\n"
                               "data:\n  name: synthetic_blobs\n  samples: 512\n  batch_size: 32\n"
                               "optimizer: {name: sgd, lr: 0.05, momentum: 0.9}\n"
                               "trainer:\n  epochs: 2\n  log_every: 5\n");
  return path;
}

nlohmann::json summary_of(const std::string& run_dir) {
  return nlohmann::json::parse(sculpt::test::read_text(run_dir + "/summary.json"));
}
}  // namespace

TEST_CASE("train writes the run directory: resolved config, log, metrics, summary, weights",
          "[run]") {
  sculpt::cli::register_builtins();
  std::string dir = sculpt::test::temp_dir("run");
  std::string cfg_path = write_config(dir, "a");
  auto r = run_process(kSculpt + " train " + cfg_path + " trainer.epochs=3");
  REQUIRE(r.exit_code == 0);
  std::string run = dir + "/a";
  for (const char* f : {"config.yaml", "log.txt", "metrics.jsonl", "summary.json",
                        "model.safetensors", "report.html"})
    CHECK(fs::exists(run + "/" + f));
  // report.html: the final table and one inline SVG chart per series, nothing loaded from
  // elsewhere (no scripts, no src/href).
  const std::string html = sculpt::test::read_text(run + "/report.html");
  CHECK_THAT(html, Catch::Contains("<td>val</td><td>accuracy</td>"));
  CHECK_THAT(html, Catch::Contains("font-weight='bold'>train loss</text>"));
  CHECK_THAT(html, Catch::Contains("font-weight='bold'>train lr</text>"));
  CHECK_THAT(html, Catch::Contains("font-weight='bold'>val accuracy</text>"));
  CHECK_THAT(html, !Catch::Contains("<script"));
  CHECK_THAT(html, !Catch::Contains("src="));
  CHECK_THAT(html, !Catch::Contains("href="));
  // The snapshot is the resolved config, override included, and loads to the same hash.
  auto original = sculpt::config::Config::load(cfg_path, {"trainer.epochs=3"});
  auto snapshot = sculpt::config::Config::load(run + "/config.yaml");
  CHECK(snapshot.trainer.epochs == 3);
  CHECK(snapshot.hash() == original.hash());
  CHECK_THAT(sculpt::test::read_text(run + "/log.txt"), Catch::Contains("done: "));
  auto s = summary_of(run);
  CHECK(s["config_hash"] == original.hash());
  CHECK(s["model"]["params"] == 16 * 16 + 16 + 16 * 4 + 4);
  CHECK(s["steps"] == 3 * ((512 - 51 + 31) / 32));
  CHECK(s["final"]["val"]["accuracy"].get<double>() > 0.5);
  // metrics.jsonl: one JSON object per line, train records every 5 steps, val after each epoch.
  std::ifstream lines(run + "/metrics.jsonl");
  std::string line;
  int train = 0, val = 0;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line);
    (j["split"] == "train" ? train : val)++;
    CHECK(j.contains("step"));
    CHECK(j.contains("elapsed_s"));
  }
  CHECK(train == 9);  // steps 5..45 and the last one (45 steps)
  CHECK(val == 3);
  // The same records as TensorBoard scalars: one event file, tags <split>/<metric>.
  std::vector<std::string> event_files;
  for (const auto& e : fs::directory_iterator(run + "/tensorboard")) event_files.push_back(e.path());
  REQUIRE(event_files.size() == 1);
  CHECK_THAT(event_files[0], Catch::Contains("tfevents"));
  auto events = sculpt::report::read_event_file(event_files[0]);
  std::map<std::string, std::vector<int64_t>> steps;
  float last_val_accuracy = -1;
  for (const auto& e : events)
    for (const auto& v : e.values) {
      steps[v.tag].push_back(e.step);
      if (v.tag == "val/accuracy") last_val_accuracy = v.simple_value;
    }
  CHECK(steps["train/loss"].size() == 9);
  CHECK(steps["train/loss"].front() == 5);
  CHECK(steps["train/lr"].size() == 9);
  CHECK(steps["val/accuracy"] == std::vector<int64_t>{15, 30, 45});
  CHECK(last_val_accuracy == static_cast<float>(s["final"]["val"]["accuracy"].get<double>()));
}

TEST_CASE("the same seed gives the same run, another seed a different one", "[run]") {
  std::string dir = sculpt::test::temp_dir("seed");
  std::string a = write_config(dir, "a"), b = write_config(dir, "b");
  REQUIRE(run_process(kSculpt + " train " + a).exit_code == 0);
  REQUIRE(run_process(kSculpt + " train " + b).exit_code == 0);
  REQUIRE(
      run_process(kSculpt + " train " + a + " run.seed=8 run.output_dir=" + dir + "/c").exit_code ==
      0);
  auto sa = summary_of(dir + "/a"), sb = summary_of(dir + "/b"), sc = summary_of(dir + "/c");
  CHECK(sa["final"]["train"]["loss"].get<double>() == sb["final"]["train"]["loss"].get<double>());
  CHECK(sa["final"]["train"]["loss"].get<double>() != sc["final"]["train"]["loss"].get<double>());
}

TEST_CASE("eval reproduces the final metrics from the saved weights", "[run]") {
  std::string dir = sculpt::test::temp_dir("eval");
  std::string cfg = write_config(dir, "a");
  REQUIRE(run_process(kSculpt + " train " + cfg).exit_code == 0);
  auto r = run_process(kSculpt + " eval " + cfg);
  REQUIRE(r.exit_code == 0);
  auto got = nlohmann::json::parse(r.out);
  auto want = summary_of(dir + "/a")["final"];
  CHECK(got["val"]["accuracy"].get<double>() == want["val"]["accuracy"].get<double>());
  CHECK(got["val"]["loss"].get<double>() ==
        Approx(want["val"]["loss"].get<double>()).epsilon(1e-12));
}

TEST_CASE("eval and inspect name the file and the tensor on bad weights, exit 2", "[run]") {
  std::string dir = sculpt::test::temp_dir("badw");
  std::string cfg = write_config(dir, "a");
  auto none = run_process(kSculpt + " eval " + cfg);
  CHECK(none.exit_code == 2);
  CHECK_THAT(none.err, Catch::Contains(dir + "/a/model.safetensors: no such weights file"));
  REQUIRE(run_process(kSculpt + " train " + cfg).exit_code == 0);
  std::string weights = dir + "/a/model.safetensors";
  // Weights of another model (hidden 16) evaluated with hidden 8: the tensor is named.
  auto other = run_process(kSculpt + " eval " + cfg + " model.hidden=[8] --weights " + weights);
  CHECK(other.exit_code == 2);
  CHECK_THAT(other.err,
             Catch::Contains(weights + ": tensor 'hidden0.seq.0.weight' has shape [16, 16]"));
  // A truncated file: inspect names the file and what is wrong, and the original is untouched.
  std::string bytes = sculpt::test::read_text(weights);
  std::string cut = dir + "/cut.safetensors";
  sculpt::test::write_text(cut, bytes.substr(0, bytes.size() - 100));
  auto truncated = run_process(kSculpt + " inspect " + cut);
  CHECK(truncated.exit_code == 2);
  CHECK_THAT(truncated.err, Catch::Contains(cut + ": tensor '"));
  CHECK_THAT(truncated.err, Catch::Contains("truncated"));
  sculpt::test::write_text(cut, "not a safetensors file at all");
  auto garbage = run_process(kSculpt + " inspect " + cut);
  CHECK(garbage.exit_code == 2);
  CHECK_THAT(garbage.err, Catch::Contains(cut + ": header length"));
  CHECK(sculpt::test::read_text(weights) == bytes);
  auto ok = run_process(kSculpt + " inspect " + weights);
  CHECK(ok.exit_code == 0);
  CHECK_THAT(ok.out, Catch::Contains("hidden0.seq.0.weight  F32   [16, 16]"));
  CHECK_THAT(ok.out, Catch::Contains("total: 4 tensors"));
}
