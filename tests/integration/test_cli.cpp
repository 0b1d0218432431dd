// The `sculpt` executable as a user runs it: exit codes, messages, and nothing written on error.
#include <catch2/catch.hpp>

#include <filesystem>

#include "tests/support/process.h"

using sculpt::test::run_process;
namespace fs = std::filesystem;

namespace {
const std::string kSculpt = SCULPT_BIN;

std::string good_config(const std::string& dir) {
  std::string path = dir + "/run.yaml";
  sculpt::test::write_text(path,
                           "run:\n  name: cli\n  output_dir: " + dir +
                               "/out\n  device: cpu\n"
                               "model:\n  name: mlp\n  hidden: [16]\n"
                               "data:\n  name: synthetic_blobs\n  samples: 256\n  batch_size: 32\n"
                               "trainer:\n  epochs: 2\n  log_every: 4\n");
  return path;
}
}  // namespace

TEST_CASE("sculpt --version names Sculpt, LibTorch and the CUDA state", "[cli]") {
  auto r = run_process(kSculpt + " --version");
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("sculpt 0.1.0"));
  CHECK_THAT(r.out, Catch::Contains("LibTorch 2."));
  CHECK_THAT(r.out, Catch::Contains("CUDA kernels: "));
}

TEST_CASE("sculpt validate prints the resolved config and writes nothing", "[cli]") {
  std::string dir = sculpt::test::temp_dir("cli");
  auto r = run_process(kSculpt + " validate " + good_config(dir) + " trainer.epochs=3");
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("epochs: 3"));
  CHECK_THAT(r.out, Catch::Contains("lr: 0.1"));  // defaults are shown too
  CHECK_FALSE(fs::exists(dir + "/out"));
}

TEST_CASE("a bad config exits 2 with file, key and line, and creates no run directory", "[cli]") {
  std::string dir = sculpt::test::temp_dir("cli");
  std::string path = dir + "/bad.yaml";
  sculpt::test::write_text(path, "run:\n  name: bad\n  output_dir: " + dir +
                                     "/out\nmodel: {name: mlp}\ndata: {name: synthetic_blobs}\n"
                                     "trainer:\n  epochs: 1\n  lerning_rate: 3\n");
  for (const char* cmd : {" validate ", " train "}) {
    auto r = run_process(kSculpt + cmd + path);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::Contains(path + ":8:3: trainer.lerning_rate: unknown key"));
    CHECK_THAT(r.err, !Catch::Contains("terminate"));
    CHECK_FALSE(fs::exists(dir + "/out"));
  }
}

TEST_CASE("bad overrides, unknown names, malformed YAML and missing files exit 2", "[cli]") {
  std::string dir = sculpt::test::temp_dir("cli");
  std::string good = good_config(dir);
  auto empty = run_process(kSculpt + " train " + good + " foo=");
  CHECK(empty.exit_code == 2);
  CHECK_THAT(empty.err, Catch::Contains("command line override 'foo='"));
  auto unknown = run_process(kSculpt + " train " + good + " no.such.key=1");
  CHECK(unknown.exit_code == 2);
  CHECK_THAT(unknown.err, Catch::Contains("no: unknown key"));
  auto model = run_process(kSculpt + " train " + good + " model.name=resnet9000");
  CHECK(model.exit_code == 2);
  CHECK_THAT(model.err, Catch::Contains("model.name: unknown model 'resnet9000'; known models: "));
  std::string bad = dir + "/malformed.yaml";
  sculpt::test::write_text(bad, "run:\n  name: x\n    seed: 3\n");
  auto malformed = run_process(kSculpt + " validate " + bad);
  CHECK(malformed.exit_code == 2);
  CHECK_THAT(malformed.err, Catch::Contains(bad + ":"));
  CHECK_THAT(malformed.err, Catch::Contains("malformed YAML"));
  auto missing = run_process(kSculpt + " validate " + dir + "/nope.yaml");
  CHECK(missing.exit_code == 2);
  CHECK_THAT(missing.err, Catch::Contains(dir + "/nope.yaml"));
  CHECK_FALSE(fs::exists(dir + "/out"));
}

TEST_CASE("bad usage exits 2 and help exits 0", "[cli]") {
  CHECK(run_process(kSculpt).exit_code == 2);
  CHECK(run_process(kSculpt + " frobnicate").exit_code == 2);
  CHECK(run_process(kSculpt + " validate").exit_code == 2);
  CHECK(run_process(kSculpt + " --help").exit_code == 0);
}

TEST_CASE("sculpt list shows every family with descriptions and unknown kinds exit 2", "[cli]") {
  auto all = run_process(kSculpt + " list");
  CHECK(all.exit_code == 0);
  for (const char* kind :
       {"models:", "datasets:", "tasks:", "optimizers:", "schedulers:", "trainers:"})
    CHECK_THAT(all.out, Catch::Contains(kind));
  auto opt = run_process(kSculpt + " list optimizers");
  CHECK(opt.exit_code == 0);
  CHECK_THAT(opt.out, Catch::Contains("adamw"));
  CHECK_THAT(opt.out, Catch::Contains("decoupled weight decay"));
  CHECK_THAT(opt.out, !Catch::Contains("models:"));
  auto bad = run_process(kSculpt + " list gadgets");
  CHECK(bad.exit_code == 2);
  CHECK_THAT(bad.err, Catch::Contains("unknown kind 'gadgets'"));
  auto keys = run_process(kSculpt + " list keys");
  CHECK(keys.exit_code == 0);
  CHECK_THAT(keys.out, Catch::Contains("optimizer.momentum"));
}

TEST_CASE("asking for CUDA where there is none is a clear error before any output", "[cli]") {
  std::string dir = sculpt::test::temp_dir("cli");
  auto r = run_process(kSculpt + " train " + good_config(dir) + " run.device=cuda:0");
  if (r.exit_code == 0) {
    SUCCEED("this machine has CUDA");
    return;
  }
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("CUDA is not available"));
  CHECK_FALSE(fs::exists(dir + "/out"));
}

TEST_CASE("a CPU process never loads CUDA's libraries; where a driver is they load with Sculpt's "
          "CUDA kernels", "[cli]") {
  if (fs::exists("/proc/driver/nvidia/version") || fs::exists("/dev/nvidiactl")) {
    SUCCEED("this machine has an NVIDIA driver");
    return;
  }
  auto cpu = run_process(kSculpt + " --version");
  REQUIRE(cpu.exit_code == 0);
  CHECK_THAT(cpu.out, Catch::Contains("CUDA: not loaded"));
  // SCULPT_LOAD_CUDA=1 stands in for a driver: the libraries load (no GPU is found).
  auto forced = run_process("SCULPT_LOAD_CUDA=1 " + kSculpt + " --version");
  REQUIRE(forced.exit_code == 0);
  CHECK_THAT(forced.out, Catch::Contains("CUDA: LibTorch's CUDA libraries loaded; GPUs: 0"));
  const bool kernels_built =
      fs::exists(fs::path(kSculpt).parent_path().parent_path() / "lib/libsculpt_kernels_cuda.so");
  CHECK_THAT(forced.out, Catch::Contains(kernels_built ? "Sculpt's CUDA kernels: loaded"
                                                       : "Sculpt's CUDA kernels: not built"));
}

TEST_CASE("a malformed data file exits 2 naming the file and line", "[cli]") {
  std::string dir = sculpt::test::temp_dir("cli");
  sculpt::test::write_text(dir + "/ragged.csv", "a,b,label\n1,2,0\n3,1\n");
  std::string path = dir + "/csv.yaml";
  sculpt::test::write_text(path, "run:\n  name: csv\n  output_dir: " + dir +
                                     "/out\n  device: cpu\nmodel: {name: mlp}\n"
                                     "data:\n  name: csv\n  file: " +
                                     dir + "/ragged.csv\n");
  auto r = run_process(kSculpt + " train " + path);
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains(dir + "/ragged.csv:3: expected 3 columns, got 2"));
  CHECK_THAT(r.err, !Catch::Contains("terminate"));
}

TEST_CASE("a mistyped subcommand is named with the closest one, exit 2", "[cli]") {
  const auto r = run_process(kSculpt + " trian configs/quickstart.yaml");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("unknown subcommand 'trian'; did you mean 'train'?"));
  const auto opt = run_process(kSculpt + " --log-level warn valdate x.yaml");
  CHECK(opt.exit_code == 2);
  CHECK_THAT(opt.err, Catch::Contains("unknown subcommand 'valdate'; did you mean 'validate'?"));
}
