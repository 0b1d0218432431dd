// Compression recipes through the `sculpt` executable: mistakes in a recipe exit 2 with a
// message that says what to write instead; validate --explain shows which pass touches which
// layer; a run with freeze + l2sp reports both in summary.json and report.html.
#include <catch2/catch.hpp>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "tests/support/process.h"

using sculpt::test::run_process;
namespace fs = std::filesystem;

namespace {
const std::string kSculpt = SCULPT_BIN;

// A config whose compression: list is `recipe` (YAML flow list).
std::string recipe_config(const std::string& dir, const std::string& recipe) {
  std::string path = dir + "/recipe.yaml";
  sculpt::test::write_text(
      path, "run: {name: passes, output_dir: " + dir +
                "/out, device: cpu, seed: 2}\n"
                "model: {name: mlp, hidden: [16, 12]}\n"
                "data: {name: synthetic_blobs, samples: 256, features: 8, classes: 3, "
                "batch_size: 32}\n"
                "trainer: {max_steps: 6, log_every: 2, tensorboard: false}\n"
                "compression: " +
                recipe + "\n");
  return path;
}
}  // namespace

TEST_CASE("sculpt list passes shows the built-in passes with their keys", "[cli][passes]") {
  auto r = run_process(kSculpt + " list passes");
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("freeze"));
  CHECK_THAT(r.out, Catch::Contains("unfreeze_at"));
  CHECK_THAT(r.out, Catch::Contains("l2sp"));
  CHECK_THAT(r.out, Catch::Contains("alpha"));
  CHECK_THAT(r.out, Catch::Contains("include_bias"));
}

TEST_CASE("an unknown pass name exits 2 listing the known passes", "[cli][passes]") {
  std::string dir = sculpt::test::temp_dir("passes");
  auto r = run_process(kSculpt + " validate " + recipe_config(dir, "[{name: frezee}]"));
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("unknown pass 'frezee'; did you mean 'freeze'?"));
  CHECK_THAT(r.err, Catch::Contains("freeze, l2sp"));
}

TEST_CASE("a key the pass does not accept exits 2 suggesting the nearest", "[cli][passes]") {
  std::string dir = sculpt::test::temp_dir("passes");
  const std::string path = recipe_config(dir, "[{name: freeze, unfreze_at: 3}]");
  auto r = run_process(kSculpt + " validate " + path);
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("compression[0].unfreze_at"));
  CHECK_THAT(r.err, Catch::Contains("did you mean 'unfreeze_at'"));
  // A key of another pass is as unknown here.
  auto other =
      run_process(kSculpt + " validate " + recipe_config(dir, "[{name: freeze, alpha: 1}]"));
  CHECK(other.exit_code == 2);
  CHECK_THAT(other.err, Catch::Contains("compression[0].alpha"));
}

TEST_CASE("a layer pattern matching no layer warns with the layers, and fails when strict",
          "[cli][passes]") {
  std::string dir = sculpt::test::temp_dir("passes");
  auto warned = run_process(kSculpt + " validate --explain " +
                            recipe_config(dir, "[{name: freeze, include: ['hiden0.*']}]"));
  CHECK(warned.exit_code == 0);
  CHECK_THAT(warned.err, Catch::Contains("compression pass freeze: include pattern 'hiden0.*' "
                                         "matches no layer; the layers are: hidden0.seq.0, "
                                         "hidden1.seq.0, head.seq.0"));
  auto strict =
      run_process(kSculpt + " train " +
                  recipe_config(dir, "[{name: freeze, strict: true, include: ['hiden0.*']}]"));
  CHECK(strict.exit_code == 2);
  CHECK_THAT(strict.err, Catch::Contains("include pattern 'hiden0.*' matches no layer"));
  CHECK_THAT(strict.err, Catch::Contains("hidden0.seq.0, hidden1.seq.0, head.seq.0"));
}

TEST_CASE("validate --explain shows each pass with its layers and their settings",
          "[cli][passes]") {
  std::string dir = sculpt::test::temp_dir("passes");
  auto r = run_process(kSculpt + " validate --explain " +
                       recipe_config(dir,
                                     "[{name: freeze, include: ['hidden0.*'], unfreeze_at: 4}, "
                                     "{name: l2sp, exclude: ['hidden0.*'], alpha: 0.5, "
                                     "overrides: [{layers: 'head.*', alpha: 2}]}]"));
  REQUIRE(r.exit_code == 0);
  INFO(r.out);
  CHECK_THAT(r.out, Catch::Contains("# plan\nmodel mlp: 3 compressible layers"));
  CHECK_THAT(r.out, Catch::Contains("compression[0] freeze: 1 of 3 layers\n"
                                    "  hidden0.seq.0 [16, 8]: unfreeze_at: 4\n"
                                    "compression[1] l2sp: 2 of 3 layers\n"
                                    "  hidden1.seq.0 [12, 16]: alpha: 0.5, include_bias: false\n"
                                    "  head.seq.0 [3, 12]: alpha: 2.0, include_bias: false\n"));
  CHECK_FALSE(fs::exists(dir + "/out"));
}

TEST_CASE("a run with freeze and l2sp reports both in summary.json and report.html",
          "[cli][passes]") {
  std::string dir = sculpt::test::temp_dir("passes");
  auto r = run_process(kSculpt + " train " +
                       recipe_config(dir,
                                     "[{name: freeze, include: ['hidden0.*'], unfreeze_at: 4}, "
                                     "{name: l2sp, alpha: 0.5}]") +
                       " --log-level warn");
  REQUIRE(r.exit_code == 0);
  const auto summary = nlohmann::json::parse(sculpt::test::read_text(dir + "/out/summary.json"));
  INFO(summary.dump(2));
  REQUIRE(summary["compression"].size() == 2);
  const auto& freeze = summary["compression"][0];
  CHECK(freeze["pass"] == "freeze");
  CHECK(freeze["summary"]["layers"][0]["name"] == "hidden0.seq.0");
  CHECK(freeze["summary"]["layers"][0]["steps_frozen"] == 4);
  CHECK(freeze["summary"]["layers"][0]["unfrozen"] == true);
  const auto& l2sp = summary["compression"][1];
  CHECK(l2sp["pass"] == "l2sp");
  REQUIRE(l2sp["summary"]["layers"].size() == 3);
  for (const auto& layer : l2sp["summary"]["layers"])
    CHECK(layer["relative_distance"].get<double>() > 0);
  const std::string html = sculpt::test::read_text(dir + "/out/report.html");
  CHECK_THAT(html, Catch::Contains("<h2>Compression</h2>"));
  CHECK_THAT(html, Catch::Contains("freeze"));
  CHECK_THAT(html, Catch::Contains("l2sp"));
  CHECK_THAT(html, Catch::Contains("hidden0.seq.0"));
}
