// Golden runs: the quickstart and one compression recipe (tests/golden/quickstart_prune_qat.yaml)
// are trained for real, and every number they log in metrics.jsonl (losses, lr, val metrics;
// not the timings) must equal, bit for bit, what tests/golden/*.json pins. A refactor of the
// loop, the passes or the config must leave them as they are; a change meant to alter the
// numbers regenerates them with scripts/update_golden.sh and says so in its commit.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "tests/support/process.h"

namespace {

const std::string kSculpt = SCULPT_BIN;
const std::string kSource = SCULPT_SOURCE_DIR;

// The records of metrics.jsonl without the fields that measure time.
nlohmann::json logged_numbers(const std::string& run_dir) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  nlohmann::json records = nlohmann::json::array();
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    j.erase("elapsed_s");
    j.erase("samples_per_s");
    records.push_back(j);
  }
  return records;
}

// Same numerics on every x86 CPU: one thread, ATen's portable kernels, MKL's compatible path.
std::string golden_env() {
  return "OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE ";
}

void check_golden(const std::string& name, const std::string& config) {
  const std::string dir = sculpt::test::temp_dir("golden_" + name);
  const auto r = sculpt::test::run_process(golden_env() + kSculpt + " train " + kSource + "/" +
                                           config + " run.device=cpu run.output_dir=" + dir +
                                           " --log-level warn");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const auto got = logged_numbers(dir);
  const std::string golden_path = kSource + "/tests/golden/" + name + ".json";
  if (const char* write = std::getenv("SCULPT_WRITE_GOLDEN"); write && std::string(write) == "1") {
    std::ofstream(golden_path) << got.dump(1) << "\n";
    WARN("wrote " << golden_path);
    return;
  }
  std::ifstream in(golden_path);
  REQUIRE(in.good());
  const auto want = nlohmann::json::parse(in);
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO(name << " metrics.jsonl record " << i << "\n got  " << got[i].dump() << "\n want "
              << want[i].dump()
              << "\n(an intended change of the numbers: scripts/update_golden.sh)");
    CHECK(got[i] == want[i]);
  }
}

}  // namespace

TEST_CASE("golden run: the quickstart logs its pinned numbers bit for bit", "[golden]") {
  check_golden("quickstart", "configs/quickstart.yaml");
}

TEST_CASE("golden run: a prune + QAT + L2-SP recipe logs its pinned numbers bit for bit", "[golden]") {
  check_golden("quickstart_prune_qat", "tests/golden/quickstart_prune_qat.yaml");
}
