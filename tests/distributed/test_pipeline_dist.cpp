// Pipeline parallelism between real processes (Gloo on CPU, started as torchrun starts them):
// 2 and 4 stages under GPipe and 1F1B, and 2 stages x 2 data-parallel replicas, each rank
// comparing its stage's gradients and weights with one process training the whole model on
// the whole batch (tests/distributed/pipeline_worker.cpp), for 5 SGD-with-momentum steps.
#include <catch2/catch.hpp>

#include <sstream>
#include <string>

#include "tests/support/process.h"

using sculpt::test::run_ranks;

namespace {
const std::string kWorker = SCULPT_PIPELINE_WORKER;

double value_after(const std::string& out, const std::string& key) {
  auto at = out.find(key + " ");
  REQUIRE(at != std::string::npos);
  return std::stod(out.substr(at + key.size() + 1));
}

// Runs the worker on stages x data ranks and checks every rank and every step.
void check_pipeline(int stages, int data, const std::string& schedule, int m) {
  CAPTURE(stages, data, schedule, m);
  auto r = run_ranks(kWorker + " " + std::to_string(stages) + " " + std::to_string(data) + " " +
                         schedule + " " + std::to_string(m) + " 5",
                     stages * data);
  int loss_lines = 0;
  for (size_t rank = 0; rank < r.size(); ++rank) {
    CAPTURE(rank, r[rank].out, r[rank].err);
    REQUIRE(r[rank].exit_code == 0);
    CHECK(value_after(r[rank].out, "max_grad_diff") < 1e-5);
    CHECK(value_after(r[rank].out, "max_weight_diff") < 1e-5);
    // Activations held per stage: 1F1B at most the stages from here to the end, GPipe all m.
    const int stage = static_cast<int>(rank) % stages;
    const int want_peak = schedule == "gpipe" ? m : std::min(stages - stage, m);
    std::istringstream lines(r[rank].out);
    std::string line;
    while (std::getline(lines, line)) {
      if (line.rfind("loss ", 0) == 0) {
        std::istringstream f(line.substr(5));
        int step = 0;
        double got = 0, want = 0;
        std::string peak_word;
        long long peak = 0;
        f >> step >> got >> want >> peak_word >> peak;
        CHECK(got == Approx(want).margin(1e-5));
        CHECK(peak == want_peak);
        ++loss_lines;
      } else if (line.rfind("peak ", 0) == 0) {
        CHECK(std::stoll(line.substr(5)) == want_peak);
      }
    }
  }
  CHECK(loss_lines == 5 * data);  // the last stage of every replica, every step
}
}  // namespace

TEST_CASE("pipeline over Gloo: 2 stages, GPipe and 1F1B, equal one process within 1e-5",
          "[pipeline]") {
  check_pipeline(2, 1, "gpipe", 4);
  check_pipeline(2, 1, "1f1b", 3);
}

TEST_CASE("pipeline over Gloo: 4 stages, GPipe and 1F1B, equal one process within 1e-5",
          "[pipeline]") {
  check_pipeline(4, 1, "gpipe", 4);
  check_pipeline(4, 1, "1f1b", 6);
}

TEST_CASE("pipeline 2 x data 2 (4 processes, DDP within each stage) equals one process",
          "[pipeline]") {
  check_pipeline(2, 2, "1f1b", 4);
}
