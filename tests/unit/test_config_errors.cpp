// Every class of config error: the message names the file, the key path, the line and column.
#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>

#include "cli/app.h"
#include "core/config/config.h"
#include "core/config/errors.h"
#include "core/config/visitors.h"
#include "tests/support/process.h"

using sculpt::config::Config;
using sculpt::config::ConfigError;
using sculpt::config::Diagnostic;

namespace {

// Loads `yaml` from a real file and returns the diagnostics of the ConfigError it must raise.
std::vector<Diagnostic> errors_of(const std::string& yaml,
                                  const std::vector<std::string>& overrides = {},
                                  std::string* file_out = nullptr) {
  sculpt::cli::register_builtins();
  std::string dir = sculpt::test::temp_dir("cfg");
  std::string file = dir + "/run.yaml";
  sculpt::test::write_text(file, yaml);
  if (file_out) *file_out = file;
  try {
    Config::load(file, overrides);
  } catch (const ConfigError& e) {
    return e.diagnostics();
  }
  FAIL("expected a ConfigError for:\n" << yaml);
  return {};
}

const char* const kValid = R"(run:
  name: demo
model:
  name: mlp
data:
  name: synthetic_blobs
)";

}  // namespace

TEST_CASE("config rejects unknown keys with file, line, column and a suggestion", "[config]") {
  std::string file;
  auto errs =
      errors_of(std::string(kValid) + "optimizer:\n  name: sgd\n  learning_rate: 0.1\n  lr: 0.2\n",
                {}, &file);
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].path == "optimizer.learning_rate");
  CHECK(errs[0].source.file == file);
  CHECK(errs[0].source.line == 9);
  CHECK(errs[0].source.column == 3);
  CHECK_THAT(errs[0].message, Catch::Contains("unknown key"));
  auto text = errs[0].str();
  CHECK_THAT(text, Catch::StartsWith(file + ":9:3: optimizer.learning_rate: unknown key"));
}

TEST_CASE("config suggests the closest key for a typo", "[config]") {
  auto errs = errors_of(std::string(kValid) + "trainer:\n  epocs: 3\n");
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].path == "trainer.epocs");
  CHECK_THAT(errs[0].message, Catch::Contains("did you mean 'epochs'?"));
  CHECK(errs[0].source.line == 8);
}

TEST_CASE("config suggests the closest top-level section", "[config]") {
  auto errs = errors_of(std::string(kValid) + "optimiser:\n  lr: 0.1\n");
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].path == "optimiser");
  CHECK_THAT(errs[0].message, Catch::Contains("did you mean 'optimizer'?"));
}

TEST_CASE("config rejects wrong types", "[config]") {
  auto errs = errors_of(std::string(kValid) + "trainer:\n  epochs: three\n  grad_clip_norm: [1]\n");
  REQUIRE(errs.size() == 2);
  CHECK(errs[0].path == "trainer.epochs");
  CHECK_THAT(errs[0].message, Catch::Contains("expected an integer, got 'three'"));
  CHECK(errs[0].source.line == 8);
  CHECK(errs[0].source.column == 11);
  CHECK(errs[1].path == "trainer.grad_clip_norm");
  CHECK_THAT(errs[1].message, Catch::Contains("expected a number, got a list"));
}

TEST_CASE("config rejects duplicate keys and says where the first one was", "[config]") {
  std::string file;
  auto errs = errors_of(std::string(kValid) + "data:\n  batch_size: 3\n", {}, &file);
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].path == "data");
  CHECK(errs[0].source.line == 7);
  CHECK_THAT(errs[0].message, Catch::Contains("duplicate key (first written at " + file + ":5:1)"));
}

TEST_CASE("config rejects a string where a bool is expected", "[config]") {
  auto errs = errors_of("model: {name: mlp}\ndata:\n  name: synthetic_blobs\n  shuffle: maybe\n");
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].path == "data.shuffle");
  CHECK_THAT(errs[0].message, Catch::Contains("expected true or false, got 'maybe'"));
  CHECK(errs[0].source.line == 4);
}

TEST_CASE("config rejects out-of-range values and names the range", "[config]") {
  auto errs = errors_of(std::string(kValid) + "optimizer:\n  lr: -0.5\n");
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].path == "optimizer.lr");
  CHECK_THAT(errs[0].message, Catch::Contains("expected a number in > 0, got -0.5"));
  CHECK(errs[0].source.line == 8);
  auto errs2 = errors_of("model: {name: mlp}\ndata: {name: synthetic_blobs, val_fraction: 1.5}\n");
  REQUIRE(errs2.size() == 1);
  CHECK(errs2[0].path == "data.val_fraction");
  CHECK_THAT(errs2[0].message, Catch::Contains("[0, 1)"));
  CHECK(errs2[0].source.line == 2);
}

TEST_CASE("config reports a missing required key at its parent", "[config]") {
  auto errs = errors_of("run:\n  name: x\nmodel:\n  depth: 3\n");
  bool model = false, data = false;
  for (const auto& e : errs) {
    if (e.path == "model.name") {
      model = true;
      CHECK_THAT(e.message, Catch::Contains("missing required key"));
      CHECK(e.source.line == 4);  // the `model:` map starts on line 4
    }
    if (e.path == "data.name") data = true;
  }
  CHECK(model);
  CHECK(data);
}

TEST_CASE("config lists the allowed values of an enum", "[config]") {
  auto errs = errors_of(std::string(kValid) + "logging:\n  level: verbose\n");
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].path == "logging.level");
  CHECK_THAT(
      errs[0].message,
      Catch::Contains("expected one of trace, debug, info, warn, error, off; got 'verbose'"));
}

TEST_CASE("config rejects an unknown registry name and lists the known ones",
          "[config][registry]") {
  auto errs = errors_of(
      "model: {name: mlp}\ndata: {name: synthetic_blobs}\noptimizer:\n  name: sgdd\n  momentum: "
      "0.9\n");
  REQUIRE(errs.size() == 1);  // momentum is not flagged: it belongs to the (unknown) optimizer
  CHECK(errs[0].path == "optimizer.name");
  CHECK_THAT(errs[0].message, Catch::Contains("unknown optimizer 'sgdd'"));
  CHECK_THAT(errs[0].message, Catch::Contains("did you mean 'sgd'?"));
  CHECK_THAT(errs[0].message, Catch::Contains("known optimizers: adam, adamw, sgd"));
  CHECK(errs[0].source.line == 4);
}

TEST_CASE("config checks the options of the chosen registry entry", "[config]") {
  auto errs = errors_of(
      "model: {name: mlp}\ndata: {name: synthetic_blobs}\noptimizer:\n  name: adam\n  momentum: "
      "0.9\n");
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].path == "optimizer.momentum");
  CHECK_THAT(errs[0].message, Catch::Contains("unknown key"));
  auto ok = errors_of(
      "model: {name: mlp}\ndata: {name: synthetic_blobs}\noptimizer: {name: sgd, nesterov: "
      "true}\n");
  REQUIRE(ok.size() == 1);
  CHECK(ok[0].path == "optimizer.nesterov");
  CHECK_THAT(ok[0].message, Catch::Contains("momentum > 0"));
}

TEST_CASE("config reports malformed YAML with its line", "[config]") {
  std::string file;
  auto errs = errors_of("run:\n  name: [unclosed\nmodel: {name: mlp}\n", {}, &file);
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].source.file == file);
  CHECK(errs[0].source.line >= 2);
  CHECK_THAT(errs[0].message, Catch::Contains("malformed YAML"));
}

TEST_CASE("config reports a missing file, and a missing extends target with its line", "[config]") {
  try {
    Config::load("/no/such/dir/run.yaml");
    FAIL("no error");
  } catch (const ConfigError& e) {
    CHECK_THAT(e.what(), Catch::Contains("/no/such/dir/run.yaml"));
    CHECK_THAT(e.what(), Catch::Contains("not found"));
  }
  auto errs = errors_of("# base\nextends: nowhere.yaml\n");
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].path == "extends");
  CHECK(errs[0].source.line == 2);
  CHECK(errs[0].source.column == 10);
  CHECK_THAT(errs[0].message, Catch::Contains("file not found"));
  CHECK_THAT(errs[0].message, Catch::Contains("nowhere.yaml"));
}

TEST_CASE("config rejects bad overrides with the override as the source", "[config][override]") {
  auto empty = errors_of(kValid, {"trainer.epochs="});
  REQUIRE(empty.size() == 1);
  CHECK(empty[0].source.text == "trainer.epochs=");
  CHECK_THAT(empty[0].str(), Catch::Contains("command line override 'trainer.epochs='"));
  CHECK_THAT(empty[0].message, Catch::Contains("no value"));

  auto unknown = errors_of(kValid, {"no.such.key=1"});
  REQUIRE(unknown.size() == 1);
  CHECK(unknown[0].path == "no");
  CHECK_THAT(unknown[0].str(), Catch::Contains("command line override 'no.such.key=1'"));
  CHECK_THAT(unknown[0].message, Catch::Contains("unknown key"));

  auto nested = errors_of(kValid, {"trainer.epoch=2"});
  REQUIRE(nested.size() == 1);
  CHECK(nested[0].path == "trainer.epoch");
  CHECK_THAT(nested[0].message, Catch::Contains("did you mean 'epochs'?"));

  auto typed = errors_of(kValid, {"trainer.epochs=lots"});
  REQUIRE(typed.size() == 1);
  CHECK_THAT(typed[0].message, Catch::Contains("expected an integer"));

  auto noeq = errors_of(kValid, {"trainer.epochs"});
  REQUIRE(noeq.size() == 1);
  CHECK_THAT(noeq[0].message, Catch::Contains("key.path=value"));
}

TEST_CASE("config collects every error of a file before failing", "[config]") {
  auto errs = errors_of(
      "model: {name: mlp}\ndata: {name: synthetic_blobs, batch_size: 0}\n"
      "trainer: {epochs: -1, log_every: x}\nrun: {device: tpu}\n");
  std::vector<std::string> paths;
  for (const auto& e : errs) paths.push_back(e.path);
  CHECK(errs.size() == 4);
  CHECK(std::count(paths.begin(), paths.end(), "data.batch_size") == 1);
  CHECK(std::count(paths.begin(), paths.end(), "trainer.epochs") == 1);
  CHECK(std::count(paths.begin(), paths.end(), "trainer.log_every") == 1);
  CHECK(std::count(paths.begin(), paths.end(), "run.device") == 1);
}

TEST_CASE("config cross-field rule: a run that would do nothing", "[config]") {
  auto errs = errors_of(std::string(kValid) + "trainer: {epochs: 0, max_steps: 0}\n");
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].path == "trainer.max_steps");
}

namespace {
// A section of the shape future data sections have: a required file path and a list of numbers.
struct FileSection : sculpt::config::Section {
  std::string path;
  std::vector<double> weights;
  void visit(sculpt::config::Visitor& v) override {
    v.file("path", path, "input file", sculpt::config::Need::required);
    v.field("weights", weights, "weights", sculpt::config::Range::closed(0, 1));
  }
};

std::vector<Diagnostic> read_errors(const std::string& yaml, FileSection& s) {
  auto node = sculpt::config::parse_yaml_text(yaml, sculpt::config::Source{"x.yaml", 0, 0, ""});
  std::vector<Diagnostic> errors;
  sculpt::config::read_section(node, s, sculpt::config::Source{"x.yaml", 1, 1, ""}, errors);
  return errors;
}
}  // namespace

TEST_CASE("config reports a file key that names a missing file, and list items by index",
          "[config]") {
  FileSection s;
  auto errs = read_errors("path: /no/such/file.bin\nweights: [0.5, 2, x]\n", s);
  REQUIRE(errs.size() == 3);
  CHECK(errs[0].path == "path");
  CHECK(errs[0].str() == "x.yaml:1:7: path: file not found: /no/such/file.bin");
  CHECK(errs[1].path == "weights[1]");
  CHECK_THAT(errs[1].message, Catch::Contains("expected a number in [0, 1], got '2'"));
  CHECK(errs[1].source.column == 16);
  CHECK(errs[2].path == "weights[2]");

  std::string dir = sculpt::test::temp_dir("file");
  sculpt::test::write_text(dir + "/data.bin", "x");
  FileSection ok;
  CHECK(read_errors("path: " + dir + "/data.bin\nweights: [0.25]\n", ok).empty());
  CHECK(ok.path == dir + "/data.bin");
  CHECK(ok.weights == std::vector<double>{0.25});

  FileSection missing;
  auto req = read_errors("weights: []\n", missing);
  REQUIRE(req.size() == 1);
  CHECK(req[0].path == "path");
  CHECK_THAT(req[0].message, Catch::Contains("missing required key"));
}

TEST_CASE("a config of nested YAML aliases (billion laughs) is refused at once, naming the file",
          "[config]") {
  // Nine levels of ten aliases each: 10^9 values from a file of under 1 KB.
  std::string yaml = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i <= 9; ++i) {
    const std::string p = "*a" + std::to_string(i - 1);
    yaml += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [" + p;
    for (int k = 1; k < 10; ++k) yaml += ", " + p;
    yaml += "]\n";
  }
  REQUIRE(yaml.size() < 1024);
  std::string file;
  const auto t0 = std::chrono::steady_clock::now();
  const auto errors = errors_of(yaml, {}, &file);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].source.file == file);
  CHECK(errors[0].source.line > 0);
  CHECK_THAT(errors[0].message, Catch::Contains("nested YAML aliases"));
  CHECK(seconds < 1.0);
}

TEST_CASE("a config nested deeper than 64 levels is refused", "[config]") {
  std::string yaml;
  for (int i = 0; i < 70; ++i) yaml += std::string(static_cast<size_t>(2 * i), ' ') + "k:\n";
  const auto errors = errors_of(yaml);
  REQUIRE(errors.size() == 1);
  CHECK_THAT(errors[0].message, Catch::Contains("deeper than 64"));
}
