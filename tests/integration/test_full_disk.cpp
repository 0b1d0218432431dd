// A disk that fills up while a checkpoint is written: the run ends with exit 1 naming the
// checkpoint and the cause, the half-written folder is gone, and the previous checkpoint is
// intact (a later resume from it finishes with the uninterrupted run's weights). Tested on a
// real 3 MiB tmpfs (ENOSPC) where this process may mount one, and always under a file-size
// limit (RLIMIT_FSIZE, EFBIG), which reaches the same write path.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/support/process.h"

using sculpt::test::run_process;
namespace fs = std::filesystem;

namespace {
const std::string kSculpt = SCULPT_BIN;

// A ~0.7 MB model whose checkpoints (weights + AdamW state) take ~2 MB each.
std::string config(const std::string& dir) {
  const std::string path = dir + "/d.yaml";
  sculpt::test::write_text(
      path,
      "run: {name: d, device: cpu, seed: 4}\n"
      "model: {name: mlp, hidden: [512, 256]}\n"
      "data: {name: synthetic_blobs, samples: 1000, features: 64, classes: 6, batch_size: 32}\n"
      "optimizer: {name: adamw, lr: 0.001}\n"
      "trainer: {max_steps: 16, log_every: 2, checkpoint_every: 4, keep_checkpoints: 1,\n"
      "          final_train_eval: false, tensorboard: false}\n");
  return path;
}

// `sculpt train cfg args...` with a file-size limit of `limit` bytes (SIGXFSZ ignored, so a
// write past it fails with EFBIG as on a full disk).
sculpt::test::ProcessResult train_limited(const std::string& cfg, const std::string& args,
                                          rlim_t limit, const std::string& dir) {
  const std::string err_file = dir + "/limited.err";
  const pid_t pid = fork();
  if (pid == 0) {
    const rlimit r{limit, limit};
    setrlimit(RLIMIT_FSIZE, &r);
    signal(SIGXFSZ, SIG_IGN);
    const std::string cmd = kSculpt + " train " + cfg + " " + args + " 2>" + err_file;
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  sculpt::test::ProcessResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = sculpt::test::read_text(err_file);
  return r;
}

}  // namespace

TEST_CASE("a file-size limit hit while a checkpoint is written: exit 1, the previous one intact",
          "[disk]") {
  const std::string dir = sculpt::test::temp_dir("full_disk_limit");
  const std::string cfg = config(dir);
  REQUIRE(run_process(kSculpt + " train " + cfg + " run.output_dir=" + dir +
                      "/whole --log-level warn")
              .exit_code == 0);
  // 8 steps, then the resumed run's first checkpoint (step 12) exceeds a 1 MB file limit.
  REQUIRE(run_process(kSculpt + " train " + cfg + " run.output_dir=" + dir +
                      "/b trainer.max_steps=8 --log-level warn")
              .exit_code == 0);
  const std::string step8 = sculpt::test::read_text(dir + "/b/checkpoints/step_8/model.safetensors");
  const auto r = train_limited(cfg, "run.output_dir=" + dir + "/b run.resume=auto", 1 << 20, dir);
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::Contains("cannot write the checkpoint " + dir + "/b/checkpoints/step_12"));
  CHECK_THAT(r.err, Catch::Contains("File too large"));
  CHECK_THAT(r.err, Catch::Contains(dir + "/b/checkpoints/step_8, is intact"));
  CHECK_FALSE(fs::exists(dir + "/b/checkpoints/step_12.tmp"));
  CHECK_FALSE(fs::exists(dir + "/b/checkpoints/step_12"));
  CHECK(sculpt::test::read_text(dir + "/b/checkpoints/latest") == "step_8\n");
  const bool untouched =
      sculpt::test::read_text(dir + "/b/checkpoints/step_8/model.safetensors") == step8;
  CHECK(untouched);
  // With room again, the run resumes from step 8 and ends where the uninterrupted one did.
  const auto again = run_process(kSculpt + " train " + cfg + " run.output_dir=" + dir +
                                 "/b run.resume=auto --log-level info");
  REQUIRE(again.exit_code == 0);
  CHECK_THAT(again.err, Catch::Contains("resumed from " + dir + "/b/checkpoints/step_8"));
  CHECK(sculpt::test::tensors_of(dir + "/b/model.safetensors") ==
        sculpt::test::tensors_of(dir + "/whole/model.safetensors"));
}

TEST_CASE("a tmpfs that fills up while a checkpoint is written: exit 1, the previous one intact",
          "[disk]") {
  const std::string dir = sculpt::test::temp_dir("full_disk_tmpfs");
  const std::string cfg = config(dir);
  const std::string mnt = dir + "/small";
  fs::create_directories(mnt);
  if (run_process("mount -t tmpfs -o size=3m tmpfs " + mnt).exit_code != 0)
    sculpt::test::skip_test("this process may not mount a tmpfs (not root, or no CAP_SYS_ADMIN); "
                            "the file-size-limit case covers the same path");
  struct Unmount {
    std::string at;
    ~Unmount() { run_process("umount " + at); }
  } unmount{mnt};
  // The first checkpoint (step 4, ~2 MB) fits in 3 MiB; the second does not.
  const auto r = run_process(kSculpt + " train " + cfg + " run.output_dir=" + mnt + "/run");
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::Contains("cannot write the checkpoint " + mnt + "/run/checkpoints/step_8"));
  CHECK_THAT(r.err, Catch::Contains("No space left on device"));
  CHECK_THAT(r.err, Catch::Contains(mnt + "/run/checkpoints/step_4, is intact"));
  CHECK_FALSE(fs::exists(mnt + "/run/checkpoints/step_8.tmp"));
  CHECK(sculpt::test::read_text(mnt + "/run/checkpoints/latest") == "step_4\n");
  // The surviving checkpoint, copied to a disk with room, resumes and finishes the run.
  fs::copy(mnt + "/run", dir + "/copy", fs::copy_options::recursive);
  const auto resumed = run_process(kSculpt + " train " + cfg + " run.output_dir=" + dir +
                                   "/copy run.resume=auto --log-level info");
  INFO(resumed.err);
  CHECK(resumed.exit_code == 0);
  CHECK_THAT(resumed.err, Catch::Contains("resumed from " + dir + "/copy/checkpoints/step_4"));
}
