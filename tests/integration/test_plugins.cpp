// Plugins as a user meets them: `--plugin` and `plugins:` load shared libraries whose passes
// and keys the config then accepts; every way a plugin can be wrong is exit 2 with a message
// naming the file (and the symbol, the versions or the pass).
#include <catch2/catch.hpp>

#include <filesystem>

#include "tests/support/process.h"

using sculpt::test::run_process;
namespace fs = std::filesystem;

namespace {
const std::string kSculpt = SCULPT_BIN;
const std::string kNoop = fs::canonical(SCULPT_TEST_NOOP_PLUGIN).string();
const std::string kNoopCopy = fs::canonical(SCULPT_TEST_NOOP_COPY_PLUGIN).string();
const std::string kNoRegister = fs::canonical(SCULPT_TEST_NO_REGISTER_PLUGIN).string();
const std::string kWrongVersion = fs::canonical(SCULPT_TEST_WRONG_VERSION_PLUGIN).string();

// A small run with the test_noop pass; `plugins` is the YAML list's text.
std::string config_with(const std::string& dir, const std::string& plugins) {
  std::string path = dir + "/run.yaml";
  sculpt::test::write_text(path,
                           "run:\n  name: plugin\n  output_dir: " + dir +
                               "/out\n  device: cpu\n"
                               "model:\n  name: mlp\n  hidden: [8]\n"
                               "data:\n  name: synthetic_blobs\n  samples: 128\n  batch_size: 32\n"
                               "trainer:\n  epochs: 1\n  log_every: 4\n"
                               "plugins: " +
                               plugins +
                               "\n"
                               "compression:\n  - name: test_noop\n    note: hello\n");
  return path;
}
}  // namespace

TEST_CASE("list passes --plugin shows the plugin's passes", "[cli][plugins]") {
  auto without = run_process(kSculpt + " list passes");
  CHECK(without.exit_code == 0);
  CHECK_THAT(without.out, !Catch::Contains("test_noop"));
  auto with = run_process(kSculpt + " list passes --plugin " + kNoop);
  CHECK(with.exit_code == 0);
  CHECK_THAT(with.out,
             Catch::Contains("test_noop") && Catch::Contains("test plugin: does nothing"));
}

TEST_CASE("a plugin under plugins: is loaded before the config is read, relative to the YAML",
          "[cli][plugins]") {
  std::string dir = sculpt::test::temp_dir("plugins");
  // Relative to the directory of the YAML file, not to the working directory.
  std::string rel = fs::relative(kNoop, dir).string();
  std::string path = config_with(dir, "[" + rel + "]");
  auto validate = run_process("cd / && " + kSculpt + " validate " + path);
  CHECK(validate.exit_code == 0);
  CHECK_THAT(validate.out, Catch::Contains("note: \"hello\""));
  // The pass's keys are checked like any other.
  auto typo = run_process(kSculpt + " validate " + path + " compression[0].noet=1");
  CHECK(typo.exit_code == 2);
  CHECK_THAT(typo.err, Catch::Contains("compression[0].noet: unknown key"));
  // Without the plugin the pass is unknown.
  auto unknown = run_process(kSculpt + " validate " + path + " plugins=[]");
  CHECK(unknown.exit_code == 2);
  CHECK_THAT(unknown.err, Catch::Contains("unknown pass 'test_noop'"));
  auto train = run_process(kSculpt + " train " + path);
  CHECK(train.exit_code == 0);
  CHECK_THAT(sculpt::test::read_text(dir + "/out/summary.json"),
             Catch::Contains("\"pass\": \"test_noop\"") && Catch::Contains("\"note\": \"hello\""));
}

TEST_CASE("the same plugin named twice (--plugin and plugins:) is loaded once", "[cli][plugins]") {
  std::string dir = sculpt::test::temp_dir("plugins");
  std::string path = config_with(dir, "[" + kNoop + ", " + kNoop + "]");
  auto r = run_process(kSculpt + " validate " + path + " --plugin " + kNoop + " trainer.epochs=2");
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("epochs: 2"));  // the override after --plugin stays one
}

TEST_CASE("a missing plugin file exits 2 naming the file and where it was named",
          "[cli][plugins]") {
  std::string dir = sculpt::test::temp_dir("plugins");
  std::string path = config_with(dir, "[libnope.so]");
  auto yaml = run_process(kSculpt + " train " + path);
  CHECK(yaml.exit_code == 2);
  CHECK_THAT(yaml.err,
             Catch::Contains(path + ":15:") &&
                 Catch::Contains("plugins[0]: plugin " + dir + "/libnope.so: no such file"));
  CHECK_FALSE(fs::exists(dir + "/out"));
  auto cli = run_process(kSculpt + " list passes --plugin " + dir + "/libgone.so");
  CHECK(cli.exit_code == 2);
  CHECK_THAT(cli.err, Catch::Contains("plugin " + dir + "/libgone.so: no such file"));
}

TEST_CASE("a file that is not a shared library exits 2 with dlerror's text", "[cli][plugins]") {
  std::string dir = fs::canonical(sculpt::test::temp_dir("plugins")).string();
  std::string fake = dir + "/libfake.so";
  sculpt::test::write_text(fake, std::string(200, '#') + "\nnot an ELF file\n");
  auto r = run_process(kSculpt + " list passes --plugin " + fake);
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("plugin " + fake + ": not a loadable shared library: "));
  CHECK_THAT(r.err, Catch::Contains("invalid ELF header"));  // dlerror()
}

TEST_CASE("a plugin without the register entry point exits 2 naming the symbol", "[cli][plugins]") {
  auto r = run_process(kSculpt + " list passes --plugin " + kNoRegister);
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("plugin " + kNoRegister +
                                    ": missing entry point sculpt_register_passes"));
  CHECK_THAT(r.err, Catch::Contains("SCULPT_PLUGIN"));
  CHECK_THAT(r.err, !Catch::Contains("terminate"));
}

TEST_CASE("a plugin built for another pass API version exits 2 naming both versions",
          "[cli][plugins]") {
  std::string dir = sculpt::test::temp_dir("plugins");
  auto r = run_process(kSculpt + " validate " + config_with(dir, "[" + kWrongVersion + "]"));
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err,
             Catch::Contains("plugin " + kWrongVersion + ": built for pass API version 999"));
  CHECK_THAT(r.err, Catch::Contains("this Sculpt has pass API version " +
                                    std::to_string(SCULPT_TEST_PASS_API_VERSION)));
}

TEST_CASE("a plugin registering a pass name already taken exits 2 naming the pass and both files",
          "[cli][plugins]") {
  auto r = run_process(kSculpt + " list passes --plugin " + kNoop + " --plugin " + kNoopCopy);
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("plugin " + kNoopCopy + ": cannot register pass 'test_noop'"));
  CHECK_THAT(r.err, Catch::Contains("already registered by plugin " + kNoop));
}
