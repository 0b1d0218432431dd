// The conformance suite for the passes that need more than a config line: distill (with a
// teacher trained here on the suite's data) and the SDK's example plugin, group_lasso (built
// from examples/plugins by this build and loaded like any plugin).
#include <catch2/catch.hpp>

#include "compression/plugin.h"
#include "core/config/config.h"
#include "tests/support/pass_conformance.h"
#include "tests/support/process.h"

namespace {
// A teacher on the suite's data (same features and classes), trained once per process.
const std::string& conformance_teacher() {
  static const std::string dir = [] {
    const std::string d = sculpt::test::temp_dir("conformance-teacher");
    sculpt::test::write_text(
        d + "/t.yaml",
        "run: {device: cpu, seed: 1, output_dir: " + d + "/run}\n"
        "model: {name: mlp, hidden: [32]}\n"
        "data: {name: synthetic_blobs, samples: 600, features: 8, classes: 4}\n"
        "trainer: {epochs: 2}\n");
    auto r = sculpt::test::run_process(std::string(SCULPT_BIN) + " train " + d +
                                       "/t.yaml --log-level warn");
    REQUIRE(r.exit_code == 0);
    return d + "/run";
  }();
  return dir;
}
}  // namespace

TEST_CASE("distill passes the pass conformance suite", "[passes][conformance][distill]") {
  sculpt::test::run_pass_conformance("{name: distill, teachers: [" + conformance_teacher() +
                                     "], alpha: 0.5, temperature: 3, temperature_end: 1, "
                                     "features: ['hidden1:hidden0'], relational_weight: 0.1}");
}

TEST_CASE("the example plugin group_lasso passes the pass conformance suite",
          "[passes][conformance][plugins]") {
  sculpt::compression::load_plugin(SCULPT_TEST_GROUP_LASSO_PLUGIN);  // a no-op the second time
  sculpt::test::run_pass_conformance("{name: group_lasso, lambda: 0.01}");
}
