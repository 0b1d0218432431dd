// Checkpoints as a user meets them: a real SIGINT to a real training process, a resumed run
// that matches the uninterrupted one bit for bit at every later step, pruning to the newest K
// plus the best, and clear errors (exit 2, nothing touched) for bad resume targets.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "tests/support/process.h"

using sculpt::test::run_process;
namespace fs = std::filesystem;

namespace {
const std::string kSculpt = SCULPT_BIN;

// Per-step training losses from metrics.jsonl (log_every: 1).
std::map<int64_t, double> losses(const std::string& run) { return sculpt::test::train_losses(run); }

std::string config(const std::string& dir) {
  std::string path = dir + "/r.yaml";
  sculpt::test::write_text(
      path,
      "run: {name: r, device: cpu, seed: 5}\n"
      "model: {name: mlp, hidden: [512, 512], dropout: 0.2}\n"
      "data: {name: synthetic_blobs, samples: 20000, features: 64, classes: 8, spread: 4, "
      "batch_size: 32}\n"
      "optimizer: {name: sgd, lr: 0.02, momentum: 0.9}\n"
      "scheduler: {name: cosine, warmup_steps: 30}\n"
      "trainer: {epochs: 2, log_every: 1, checkpoint_every: 100, keep_checkpoints: 2}\n");
  return path;
}
}  // namespace

TEST_CASE("SIGINT checkpoints and exits 0, and the resumed run matches bit for bit",
          "[resume][slow]") {
  std::string dir = sculpt::test::temp_dir("resume");
  std::string cfg = config(dir);
  REQUIRE(run_process(kSculpt + " train " + cfg + " run.output_dir=" + dir + "/a --log-level warn")
              .exit_code == 0);

  // The same run, interrupted by a real SIGINT once it is training.
  const std::string b = dir + "/b";
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::string out = "run.output_dir=" + b;
    execl(kSculpt.c_str(), kSculpt.c_str(), "train", cfg.c_str(), out.c_str(), "--log-level",
          "warn", static_cast<char*>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 400 && losses(b).size() < 150; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  REQUIRE(kill(pid, SIGINT) == 0);
  int status = 0;
  waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  const auto stopped = losses(b);
  const int64_t stop_step = stopped.rbegin()->first;
  INFO("stopped at step " << stop_step);
  CHECK(stop_step < 1126);  // interrupted before the end
  CHECK_FALSE(fs::exists(b + "/summary.json"));
  CHECK(sculpt::test::read_text(b + "/checkpoints/latest") ==
        "step_" + std::to_string(stop_step) + "\n");

  auto resumed =
      run_process(kSculpt + " train " + cfg + " run.output_dir=" + b + " run.resume=auto");
  REQUIRE(resumed.exit_code == 0);
  CHECK_THAT(resumed.err, Catch::Contains("resumed from " + b + "/checkpoints/step_" +
                                          std::to_string(stop_step)));
  CHECK_THAT(resumed.err, !Catch::Contains("another config"));
  auto la = losses(dir + "/a"), lb = losses(b);
  REQUIRE(la.size() == 1126);
  REQUIRE(lb.size() == 1126);
  int64_t differ = 0;
  for (const auto& [step, loss] : la) differ += lb.at(step) != loss;  // exact, not approximate
  CHECK(differ == 0);

  // Pruning: the newest two plus the best are kept.
  int64_t dirs = 0;
  for (const auto& e : fs::directory_iterator(b + "/checkpoints")) dirs += e.is_directory();
  CHECK(dirs <= 3);
  CHECK(fs::exists(b + "/checkpoints/" +
                   sculpt::test::read_text(b + "/checkpoints/best")
                       .substr(0, sculpt::test::read_text(b + "/checkpoints/best").size() - 1)));
}

TEST_CASE("bad resume targets exit 2 and leave the checkpoints untouched", "[resume]") {
  std::string dir = sculpt::test::temp_dir("badresume");
  std::string cfg = config(dir);
  auto none = run_process(kSculpt + " train " + cfg + " run.output_dir=" + dir +
                          "/x run.resume=" + dir + "/nowhere");
  CHECK(none.exit_code == 2);
  CHECK_THAT(none.err, Catch::Contains("run.resume: " + dir + "/nowhere does not exist"));

  // A short run to have a checkpoint, then resume it as a different model.
  REQUIRE(run_process(kSculpt + " train " + cfg + " run.output_dir=" + dir +
                      "/a trainer.max_steps=20 --log-level warn")
              .exit_code == 0);
  std::string latest = dir + "/a/checkpoints/step_20";
  REQUIRE(fs::exists(latest + "/model.safetensors"));
  const std::string before = sculpt::test::read_text(latest + "/model.safetensors");
  auto other = run_process(kSculpt + " train " + cfg + " run.output_dir=" + dir +
                           "/a run.resume=auto model.hidden=[64,64]");
  CHECK(other.exit_code == 2);
  CHECK_THAT(other.err,
             Catch::Contains(
                 latest + "/model.safetensors: tensor 'hidden0.seq.0.weight' has shape [512, 64]"));
  // A truncated weights file inside the checkpoint is named too.
  fs::copy(latest, dir + "/cut", fs::copy_options::recursive);
  fs::resize_file(dir + "/cut/model.safetensors", 1000);
  auto cut = run_process(kSculpt + " train " + cfg + " run.output_dir=" + dir +
                         "/c run.resume=" + dir + "/cut");
  CHECK(cut.exit_code == 2);
  CHECK_THAT(cut.err, Catch::Contains(dir + "/cut/model.safetensors"));
  CHECK(sculpt::test::read_text(latest + "/model.safetensors") == before);
}

TEST_CASE("a run resumed mid logging window logs what the uninterrupted run logs", "[resume]") {
  const std::string dir = sculpt::test::temp_dir("resume_window");
  const std::string cfg = dir + "/w.yaml";
  // Records every 7 steps, checkpoints every 10: the checkpoint at step 20 falls inside the
  // window of steps 15..21, and skipped steps are counted across the resume.
  sculpt::test::write_text(
      cfg,
      "run: {name: w, device: cpu, seed: 3}\n"
      "model: {name: mlp, hidden: [32]}\n"
      "data: {name: synthetic_blobs, samples: 2000, features: 16, classes: 4, batch_size: 32}\n"
      "optimizer: {name: sgd, lr: 0.05, momentum: 0.9}\n"
      "scheduler: {name: cosine, warmup_steps: 5}\n"
      "trainer: {max_steps: 40, log_every: 7, checkpoint_every: 10, keep_checkpoints: 10}\n");
  REQUIRE(run_process(kSculpt + " train " + cfg + " run.output_dir=" + dir + "/a --log-level warn")
              .exit_code == 0);
  REQUIRE(fs::exists(dir + "/a/checkpoints/step_20/loop.json"));
  REQUIRE(run_process(kSculpt + " train " + cfg + " run.output_dir=" + dir + "/b run.resume=" +
                      dir + "/a/checkpoints/step_20 --log-level warn")
              .exit_code == 0);
  auto train_records = [](const std::string& run) {
    std::map<int64_t, nlohmann::json> out;
    std::ifstream in(run + "/metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      auto j = nlohmann::json::parse(line);
      if (j["split"] != "train") continue;
      j.erase("elapsed_s");
      j.erase("samples_per_s");
      out[j["step"].get<int64_t>()] = j;
    }
    return out;
  };
  const auto a = train_records(dir + "/a"), b = train_records(dir + "/b");
  REQUIRE(b.size() == 4);  // steps 21, 28, 35 and the last, 40
  for (const auto& [step, record] : b) {
    INFO("step " << step << ": resumed " << record.dump() << ", uninterrupted "
                 << (a.count(step) ? a.at(step).dump() : "none"));
    REQUIRE(a.count(step) == 1);
    CHECK(record == a.at(step));
  }
}
