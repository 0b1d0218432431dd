// Every file in configs/ validates and trains for a few steps as shipped (data paths that the
// user sets are pointed at ../shared/data here, or at small generated files of the same
// formats: MNIST when ../shared/data is absent, CIFAR-10 and token files always).
#include <catch2/catch.hpp>

#include <filesystem>

#include "tests/support/process.h"

namespace fs = std::filesystem;

namespace {
std::string be32(uint32_t v) {
  return {char(v >> 24), char((v >> 16) & 0xff), char((v >> 8) & 0xff), char(v & 0xff)};
}

// A small MNIST-format folder (raw IDX, 28x28), for when ../shared/data is not beside the clone.
std::string fake_mnist() {
  const std::string dir = sculpt::test::temp_dir("fake-mnist");
  const int n = 256;
  std::string img = be32(0x803) + be32(n) + be32(28) + be32(28), lab = be32(0x801) + be32(n);
  for (int k = 0; k < n; ++k) {
    lab += char(k % 10);
    for (int i = 0; i < 28 * 28; ++i) img += char((i * 7 + k * 13) % 256);
  }
  for (const char* part : {"train", "t10k"}) {
    sculpt::test::write_text(dir + "/" + part + "-images-idx3-ubyte", img);
    sculpt::test::write_text(dir + "/" + part + "-labels-idx1-ubyte", lab);
  }
  return dir;
}

// CIFAR-10 binary batches with a few records each.
std::string fake_cifar10() {
  const std::string dir = sculpt::test::temp_dir("fake-cifar10");
  for (const char* name : {"data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                           "data_batch_5", "test_batch"}) {
    std::string bytes;
    for (int k = 0; k < 40; ++k) {
      bytes += char(k % 10);
      for (int i = 0; i < 3072; ++i) bytes += char((i * 3 + k * 11) % 256);
    }
    sculpt::test::write_text(dir + "/" + name + ".bin", bytes);
  }
  return dir;
}

// 20,000 little-endian uint16 token ids below 50.
std::string fake_tokens() {
  const std::string path = sculpt::test::temp_dir("fake-tokens") + "/train.bin";
  std::string bytes;
  for (int i = 0; i < 20000; ++i) {
    const int t = (i * 7 + i / 13) % 50;
    bytes += char(t & 0xff);
    bytes += char(t >> 8);
  }
  sculpt::test::write_text(path, bytes);
  return path;
}
// configs/text_classify_distill.yaml's checkpoint paths pointed at the small BERT (and its
// tokenizer) that tests/text_data/make_fixture.py writes, made here when it is absent.
std::string text_classify_fixture() {
  const std::string dir = sculpt::test::temp_dir("text-fixture");
  const std::string bert = dir + "/bert";
  auto r = sculpt::test::run_process(std::string(SCULPT_TEST_PYTHON_EXE) + " " SCULPT_SOURCE_DIR
                                     "/tests/text_data/make_fixture.py " + dir);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  // The example data copied, so the token cache is not written into the source tree.
  for (const char* f : {"train.jsonl", "test.jsonl"})
    fs::copy_file(SCULPT_SOURCE_DIR "/examples/text_classify/" + std::string(f), dir + "/" + f);
  return " model.path=" + bert + " model.init=" + bert + " 'compression[0].teachers=[" + bert +
         "]' data.file=" + dir + "/train.jsonl data.test_file=" + dir + "/test.jsonl";
}
}  // namespace

TEST_CASE("every shipped config trains for a few steps", "[configs]") {
  std::string mnist = SCULPT_SHARED_DATA "/mnist";
  if (!fs::exists(mnist)) {
    WARN(mnist << " absent: the MNIST configs run on a small generated IDX folder instead");
    mnist = fake_mnist();
  }
  int checked = 0;
  for (const auto& entry : fs::directory_iterator(SCULPT_SOURCE_DIR "/configs")) {
    if (entry.path().extension() != ".yaml") continue;
    const std::string name = entry.path().stem().string();
    std::string extra;
    if (name.find("mnist") != std::string::npos) extra = " data.dir=" + mnist;
    // Continual configs: 5 steps per increment; fewer Fisher samples and permutations (each
    // increment evaluates every one seen, on all of t10k).
    if (name.find("ewc") != std::string::npos) extra += " compression[0].samples=50";
    // The generated folder's images are a fixed pattern per label: its Fisher is large and
    // lambda 100 drives the EWC penalty to inf (seen in a fresh clone); real MNIST trains.
    if (name.find("ewc") != std::string::npos && mnist != SCULPT_SHARED_DATA "/mnist")
      extra += " compression[0].lambda=1";
    if (name.rfind("permuted", 0) == 0)
      extra += " 'increments=[{permute_pixels: {seed: 0}}, {permute_pixels: {seed: 1}}]'";
    if (name.rfind("cifar10", 0) == 0) extra = " data.dir=" + fake_cifar10();
    if (name.rfind("lm_", 0) == 0) extra = " data.file=" + fake_tokens();
    if (name == "text_classify_distill") extra = text_classify_fixture();
    const std::string out = sculpt::test::temp_dir("cfg-" + name);
    const std::string command = std::string(SCULPT_BIN) + " train " + entry.path().string() +
                                extra + " trainer.max_steps=5 run.output_dir=" + out +
                                " --log-level warn";
    // Pipelined configs run as they would under sculpt-run: one process per stage.
    const bool pipelined = name.rfind("pipeline", 0) == 0;
    auto r = pipelined ? sculpt::test::run_ranks(command, 2)[0]
                       : sculpt::test::run_process(command);
    INFO(name << ": " << r.err);
    CHECK(r.exit_code == 0);
    CHECK(fs::exists(out + "/summary.json"));
    ++checked;
  }
  CHECK(checked >= 5);
}
