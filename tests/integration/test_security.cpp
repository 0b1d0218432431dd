// docs/security.md's promises, each tried as an attacker would: plugins load only from the
// paths the user wrote, nothing in a config reaches a shell, run directories follow the user's
// umask and are never written through a symbolic link planted in them. (The rendezvous store's
// address is tested with the launcher, tests/distributed/test_launcher_train.cpp.)
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <filesystem>
#include <string>

#include "tests/support/process.h"

using sculpt::test::run_process;
namespace fs = std::filesystem;

namespace {
const std::string kSculpt = SCULPT_BIN;
const std::string kNoop = SCULPT_TEST_NOOP_PLUGIN;

std::string small_run(const std::string& extra = "") {
  return "run: {name: s, device: cpu, seed: 1}\n"
         "model: {name: mlp, hidden: [8]}\n"
         "data: {name: synthetic_blobs, samples: 64, features: 4, classes: 2, batch_size: 16}\n"
         "trainer: {max_steps: 4, log_every: 2, checkpoint_every: 2}\n" +
         extra;
}

unsigned mode_of(const std::string& path) {
  struct stat st{};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 0777;
}
}  // namespace

TEST_CASE("security: a plugin loads only from the path written, never from a search path",
          "[security][plugins]") {
  const std::string dir = sculpt::test::temp_dir("sec_plugins");
  const std::string name = fs::path(kNoop).filename().string();
  // A bare file name is a path relative to the YAML's folder, not a name for the dynamic
  // loader to look up in LD_LIBRARY_PATH (which here holds the plugin).
  sculpt::test::write_text(dir + "/p.yaml", small_run("plugins: [" + name + "]\n"));
  const std::string plugin_dir = fs::path(kNoop).parent_path().string();
  auto r = run_process("cd " + dir + " && LD_LIBRARY_PATH=" + plugin_dir + " " + kSculpt +
                       " validate p.yaml");
  INFO(r.err);
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("p.yaml:5:11: plugins[0]: plugin " + name + ": no such file"));
  // A library lying in the working directory or the run directory is not loaded by itself: a
  // config that uses its pass without naming it is refused.
  fs::copy_file(kNoop, dir + "/" + name);
  fs::create_directories(dir + "/run");
  fs::copy_file(kNoop, dir + "/run/" + name);
  sculpt::test::write_text(dir + "/q.yaml",
                           small_run("compression: [{name: test_noop}]\nplugins: []\n"));
  r = run_process("cd " + dir + " && " + kSculpt + " train q.yaml run.output_dir=run");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("test_noop"));
  // Named, it loads.
  r = run_process("cd " + dir + " && " + kSculpt + " validate p.yaml");
  CHECK(r.exit_code == 0);
}

TEST_CASE("security: nothing in a config or on the command line reaches a shell",
          "[security]") {
  const std::string dir = sculpt::test::temp_dir("sec_shell");
  // Shell syntax in every place a string goes: the run name, the output folder, a data path,
  // a plugin path, an override. Each would create a file named pwned* if a shell ran it.
  sculpt::test::write_text(
      dir + "/s.yaml",
      "run: {name: \"$(touch pwned1)\", device: cpu, output_dir: \"out;touch pwned2;`touch "
      "pwned3`\"}\n"
      "model: {name: mlp, hidden: [8]}\n"
      "data: {name: synthetic_blobs, samples: 64, features: 4, classes: 2, batch_size: 16}\n"
      "trainer: {max_steps: 2, log_every: 1}\n");
  auto r = run_process("cd " + dir + " && " + kSculpt + " train s.yaml 'run.name=$(touch pwned4)'");
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(fs::exists(dir + "/out;touch pwned2;`touch pwned3`/model.safetensors"));  // taken literally
  sculpt::test::write_text(dir + "/m.yaml",
                           "run: {name: m, device: cpu}\n"
                           "model: {name: mlp}\n"
                           "data: {name: mnist, root: \"$(touch pwned5)\"}\n"
                           "plugins: [\"x;touch pwned6.so\"]\n");
  r = run_process("cd " + dir + " && " + kSculpt + " train m.yaml");
  CHECK(r.exit_code == 2);
  r = run_process("cd " + dir + " && " + kSculpt + " export 'out;touch pwned2;`touch pwned3`' "
                  "--format onnx --out '$(touch pwned7)'");
  INFO(r.err);
  for (const auto& e : fs::recursive_directory_iterator(dir))
    CHECK(e.path().filename().string().rfind("pwned", 0) != 0);
}

TEST_CASE("security: run directories and their files follow the user's umask", "[security]") {
  const std::string dir = sculpt::test::temp_dir("sec_umask");
  sculpt::test::write_text(dir + "/u.yaml", small_run());
  for (const auto& [mask, want_dir, want_file] :
       std::vector<std::tuple<std::string, unsigned, unsigned>>{{"077", 0700, 0600},
                                                                {"022", 0755, 0644}}) {
    const std::string run = dir + "/run" + mask;
    auto r = run_process("umask " + mask + " && " + kSculpt + " train " + dir +
                         "/u.yaml run.output_dir=" + run);
    REQUIRE(r.exit_code == 0);
    INFO("umask " << mask);
    CHECK(mode_of(run) == want_dir);
    CHECK(mode_of(run + "/checkpoints") == want_dir);
    CHECK(mode_of(run + "/checkpoints/step_4") == want_dir);
    for (const char* f : {"/config.yaml", "/metrics.jsonl", "/model.safetensors", "/summary.json",
                          "/log.txt", "/checkpoints/latest", "/checkpoints/step_4/optimizer.pt"}) {
      INFO(f);
      CHECK(mode_of(run + f) == want_file);
    }
  }
}

TEST_CASE("security: a symbolic link planted in a run directory is refused, never followed",
          "[security]") {
  const std::string dir = sculpt::test::temp_dir("sec_links");
  sculpt::test::write_text(dir + "/l.yaml", small_run());
  const std::string run = dir + "/run";
  REQUIRE(run_process(kSculpt + " train " + dir + "/l.yaml run.output_dir=" + run).exit_code == 0);
  const std::string victim = dir + "/victim.txt";
  sculpt::test::write_text(victim, "precious\n");
  fs::create_directories(dir + "/elsewhere");
  for (const std::string& planted : {"metrics.jsonl", "log.txt", "summary.json", "checkpoints",
                                     "tensorboard", "checkpoints/latest"}) {
    INFO(planted);
    const std::string at = run + "/" + planted;
    const std::string backup = at + ".moved";
    fs::rename(at, backup);
    fs::create_symlink(planted == "checkpoints" || planted == "tensorboard" ? dir + "/elsewhere"
                                                                           : victim,
                       at);
    auto r = run_process(kSculpt + " train " + dir + "/l.yaml run.output_dir=" + run +
                         " run.resume=auto");
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::Contains(at + " is a symbolic link"));
    CHECK(sculpt::test::read_text(victim) == "precious\n");
    CHECK(fs::is_empty(dir + "/elsewhere"));
    fs::remove(at);
    fs::rename(backup, at);
  }
  // The run directory itself may be a link (a folder on another disk).
  fs::create_symlink(run, dir + "/alias");
  CHECK(run_process(kSculpt + " train " + dir + "/l.yaml run.output_dir=" + dir + "/alias")
            .exit_code == 0);
}
