// Every file in configs/ validates and trains for a few steps as shipped (data paths that the
// user sets are pointed at ../shared/data here; skipped visibly when that folder is absent).
#include <catch2/catch.hpp>

#include <filesystem>

#include "tests/support/process.h"

namespace fs = std::filesystem;

TEST_CASE("every shipped config trains for a few steps", "[configs]") {
  const std::string mnist = SCULPT_SHARED_DATA "/mnist";
  int checked = 0;
  for (const auto& entry : fs::directory_iterator(SCULPT_SOURCE_DIR "/configs")) {
    if (entry.path().extension() != ".yaml") continue;
    const std::string name = entry.path().stem().string();
    std::string extra;
    if (name.rfind("mnist", 0) == 0) {
      if (!fs::exists(mnist)) {
        WARN("skipping " << name << ": " << mnist << " absent");
        continue;
      }
      extra = " data.dir=" + mnist;
    }
    const std::string out = sculpt::test::temp_dir("cfg-" + name);
    auto r = sculpt::test::run_process(std::string(SCULPT_BIN) + " train " + entry.path().string() +
                                       extra + " trainer.max_steps=5 run.output_dir=" + out +
                                       " --log-level warn");
    INFO(name << ": " << r.err);
    CHECK(r.exit_code == 0);
    CHECK(fs::exists(out + "/summary.json"));
    ++checked;
  }
  CHECK(checked >= 3);
}
