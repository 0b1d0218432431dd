// Twenty real SIGKILLs at random moments of one training run (checkpoints every few steps, so
// some land while a checkpoint is being written), each followed by `run.resume=auto`: every
// resume succeeds, and the final weights and metrics.jsonl equal an uninterrupted run's.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "tests/support/process.h"

using sculpt::test::run_process;
namespace fs = std::filesystem;

namespace {
const std::string kSculpt = SCULPT_BIN;

// metrics.jsonl's records without their wall-clock fields.
std::vector<nlohmann::json> records(const std::string& run) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    j.erase("elapsed_s");
    j.erase("samples_per_s");
    out.push_back(j);
  }
  return out;
}

pid_t start(const std::string& cfg, const std::string& out_dir) {
  const pid_t pid = fork();
  if (pid == 0) {
    const std::string out = "run.output_dir=" + out_dir;
    const int null = ::open("/dev/null", O_WRONLY);
    if (null >= 0) {
      dup2(null, 1);
      dup2(null, 2);
    }
    execl(kSculpt.c_str(), kSculpt.c_str(), "train", cfg.c_str(), out.c_str(), "run.resume=auto",
          "--log-level", "warn", static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}
}  // namespace

TEST_CASE("20 SIGKILLs at random moments: every resume succeeds, weights and metrics match",
          "[resume][kill][slow]") {
  const std::string dir = sculpt::test::temp_dir("kills");
  const std::string cfg = dir + "/k.yaml";
  // Checkpoints every 4 steps (a model of ~1 MB, so writing one takes a fair share of the
  // time), logs every 3 and evaluates every 10 (the best checkpoint and early-stopping counter
  // are part of the state), dropout (the RNG must be restored too).
  sculpt::test::write_text(
      cfg,
      "run: {name: k, device: cpu, seed: 11}\n"
      "model: {name: mlp, hidden: [512, 256], dropout: 0.1}\n"
      "data: {name: synthetic_blobs, samples: 4000, features: 64, classes: 6, spread: 8, batch_size: 32}\n"
      "optimizer: {name: adamw, lr: 0.002}\n"
      "scheduler: {name: cosine, warmup_steps: 10}\n"
      "trainer: {max_steps: 800, log_every: 3, eval_every: 10, checkpoint_every: 4,\n"
      "          keep_checkpoints: 2, early_stopping: 100, final_train_eval: false,\n"
      "          tensorboard: false}\n");
  REQUIRE(run_process(kSculpt + " train " + cfg + " run.output_dir=" + dir +
                      "/a --log-level warn")
              .exit_code == 0);

  const std::string b = dir + "/b";
  // The moments: 20 steps drawn over the run; each attempt is killed a random 0-25 ms after
  // its metrics.jsonl shows that step (so the kills spread over the run however fast this
  // machine is, and some fall inside a checkpoint write).
  std::mt19937 rng(20261207);
  std::uniform_int_distribution<int64_t> step_of(3, 780);
  std::uniform_int_distribution<int> extra_ms(0, 25);
  std::vector<int64_t> at;
  for (int i = 0; i < 20; ++i) at.push_back(step_of(rng));
  std::sort(at.begin(), at.end());
  int killed = 0, finished_early = 0;
  std::set<std::string> partial;  // half-written checkpoint folders a kill left behind
  for (int i = 0; i < 20; ++i) {
    const pid_t pid = start(cfg, b);
    REQUIRE(pid > 0);
    int status = 0;
    bool ended = false;
    for (int t = 0; t < 12000; ++t) {  // at most 2 minutes
      if (waitpid(pid, &status, WNOHANG) == pid) {
        ended = true;
        break;
      }
      const auto logged = sculpt::test::train_losses(b);
      if (!logged.empty() && logged.rbegin()->first >= at[static_cast<size_t>(i)]) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!ended) {
      std::this_thread::sleep_for(std::chrono::milliseconds(extra_ms(rng)));
      ended = waitpid(pid, &status, WNOHANG) == pid;
    }
    if (ended) {  // it ended on its own before the kill
      INFO("attempt " << i << " ended before its kill at step " << at[static_cast<size_t>(i)]);
      REQUIRE(WIFEXITED(status));
      REQUIRE(WEXITSTATUS(status) == 0);
      ++finished_early;
      break;  // complete: the resume below must leave its weights and records as they are
    }
    REQUIRE(::kill(pid, SIGKILL) == 0);
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFSIGNALED(status));
    ++killed;
    // A checkpoint folder being written when the kill came (its .tmp is left behind).
    if (fs::exists(b + "/checkpoints"))
      for (const auto& e : fs::directory_iterator(b + "/checkpoints"))
        if (e.path().extension() == ".tmp") partial.insert(e.path().filename().string());
  }
  INFO(killed << " kills; half-written checkpoints left: " << partial.size());
  std::cerr << killed << " kills; " << partial.size() << " left a half-written checkpoint\n";
  const auto last = run_process(kSculpt + " train " + cfg + " run.output_dir=" + b +
                                " run.resume=auto --log-level warn");
  REQUIRE(last.exit_code == 0);
  CHECK(killed == 20);
  for (const auto& e : fs::directory_iterator(b + "/checkpoints"))  // the next save cleaned up
    CHECK(e.path().extension() != ".tmp");  // every attempt was really cut short (the last target is step 780 of 800)

  CHECK(sculpt::test::tensors_of(b + "/model.safetensors") ==
        sculpt::test::tensors_of(dir + "/a/model.safetensors"));
  const auto ra = records(dir + "/a"), rb = records(b);
  REQUIRE(ra.size() == rb.size());
  for (size_t i = 0; i < ra.size(); ++i) {
    INFO("record " << i);
    CHECK(rb[i] == ra[i]);
  }
  const auto sa = nlohmann::json::parse(sculpt::test::read_text(dir + "/a/summary.json"));
  const auto sb = nlohmann::json::parse(sculpt::test::read_text(b + "/summary.json"));
  CHECK(sb["final"] == sa["final"]);
}
