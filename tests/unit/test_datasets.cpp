// File-backed datasets: the real MNIST and digits files (from ../shared/data, skipped when
// absent), and every kind of malformed file named in the error.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "core/config/config.h"
#include "core/config/errors.h"
#include "core/data/dataset.h"
#include "core/error.h"
#include "tests/support/load_dataset.h"
#include "tests/support/process.h"

namespace fs = std::filesystem;
using sculpt::data::DataPart;
using sculpt::test::load_dataset;

namespace {
const std::string kMnist = SCULPT_SHARED_DATA "/mnist";
const std::string kDigits = SCULPT_SHARED_DATA "/digits/digits.csv.gz";

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string be32(uint32_t v) {
  return {char(v >> 24), char((v >> 16) & 0xff), char((v >> 8) & 0xff), char(v & 0xff)};
}

// A raw (not gzipped) IDX pair with `n` 2x3 images whose pixel i of image k is 10*k + i.
std::string tiny_idx(int n, int declared_labels) {
  std::string dir = sculpt::test::temp_dir("idx");
  std::string img = be32(0x803) + be32(n) + be32(2) + be32(3);
  for (int k = 0; k < n; ++k)
    for (int i = 0; i < 6; ++i) img += char(10 * k + i);
  std::string lab = be32(0x801) + be32(declared_labels);
  for (int k = 0; k < n; ++k) lab += char(k % 10);
  for (const char* part : {"train", "t10k"}) {
    write_bytes(dir + "/" + part + "-images-idx3-ubyte", img);
    write_bytes(dir + "/" + part + "-labels-idx1-ubyte", lab);
  }
  return dir;
}
}  // namespace

TEST_CASE("mnist reads the real IDX files: 60000 train and 10000 test images", "[data][slow]") {
  if (!fs::exists(kMnist + "/train-images-idx3-ubyte.gz"))
    sculpt::test::skip_test(kMnist + " absent");
  auto train = load_dataset("{name: mnist, dir: " + kMnist + "}", DataPart::train);
  auto test = load_dataset("{name: mnist, dir: " + kMnist + "}", DataPart::test);
  CHECK(train->inputs().sizes() == torch::IntArrayRef({60000, 1, 28, 28}));
  CHECK(test->inputs().sizes() == torch::IntArrayRef({10000, 1, 28, 28}));
  // Published label counts of the training set: 5923 zeros, 6742 ones.
  CHECK(train->targets().eq(0).sum().item<int64_t>() == 5923);
  CHECK(train->targets().eq(1).sum().item<int64_t>() == 6742);
  // Standardized with MNIST's mean and std: about zero mean, unit std.
  CHECK(train->inputs().mean().item<double>() == Approx(0.0).margin(1e-3));
  CHECK(train->inputs().std().item<double>() == Approx(1.0).margin(1e-2));
}

TEST_CASE("digits reads scikit-learn's CSV: 1797 8x8 images", "[data]") {
  if (!fs::exists(kDigits)) sculpt::test::skip_test(kDigits + " absent");
  auto d = load_dataset("{name: digits, file: " + kDigits + "}", DataPart::train);
  CHECK(d->inputs().sizes() == torch::IntArrayRef({1797, 1, 8, 8}));
  CHECK(d->targets().eq(0).sum().item<int64_t>() == 178);  // class counts from the README
  CHECK(d->targets().eq(9).sum().item<int64_t>() == 180);
  CHECK(d->inputs().max().item<float>() == 1.0f);  // 16/16
  CHECK(load_dataset("{name: digits, file: " + kDigits + "}", DataPart::test) == nullptr);
}

TEST_CASE("IDX files are decoded pixel for pixel, gzip or raw", "[data]") {
  auto dir = tiny_idx(3, 3);
  auto d = load_dataset("{name: mnist, dir: " + dir + "}", DataPart::train);
  REQUIRE(d->size() == 3);
  auto px = (d->inputs() * 0.3081 + 0.1307) * 255.0;                  // undo the standardization
  CHECK(px[2][0][1][2].item<float>() == Approx(25.0f).margin(1e-3));  // image 2, pixel 5
  CHECK(d->targets()[2].item<int64_t>() == 2);
  // standardize: false keeps the pixels at value / 255: a blank pixel is exactly 0.
  auto raw = load_dataset("{name: mnist, dir: " + dir + ", standardize: false}", DataPart::train);
  CHECK(raw->inputs()[2][0][1][2].item<float>() == Approx(25.0f / 255.0f).epsilon(1e-6));
  CHECK(torch::allclose(raw->inputs(), px / 255.0, 1e-5, 1e-6));
  CHECK(raw->inputs().min().item<float>() >= 0.0f);
  CHECK(raw->inputs().eq(0).any().item<bool>());
}

TEST_CASE("malformed IDX files are named with what is wrong", "[data]") {
  auto dir = tiny_idx(3, 4);  // 4 labels declared, 3 present
  CHECK_THROWS_WITH(
      load_dataset("{name: mnist, dir: " + dir + "}", DataPart::train),
      Catch::Contains(dir + "/train-labels-idx1-ubyte: truncated or oversized IDX file"));
  auto bad = tiny_idx(2, 2);
  write_bytes(bad + "/train-images-idx3-ubyte", be32(0x1234) + be32(0) + be32(0) + be32(0));
  CHECK_THROWS_WITH(load_dataset("{name: mnist, dir: " + bad + "}", DataPart::train),
                    Catch::Contains(bad + "/train-images-idx3-ubyte: wrong IDX magic"));
  auto empty = sculpt::test::temp_dir("empty");
  CHECK_THROWS_WITH(load_dataset("{name: mnist, dir: " + empty + "}", DataPart::train),
                    Catch::Contains("missing train-images-idx3-ubyte(.gz)"));
  // A directory that does not exist is a config error at the key.
  try {
    load_dataset("{name: mnist, dir: /no/such/dir}", DataPart::train);
    FAIL("no error");
  } catch (const sculpt::config::ConfigError& e) {
    CHECK(e.diagnostics().at(0).path == "data.dir");
    CHECK_THAT(e.what(), Catch::Contains("directory not found: /no/such/dir"));
  }
}

TEST_CASE("a truncated gzip file is named", "[data]") {
  if (!fs::exists(kMnist + "/t10k-labels-idx1-ubyte.gz"))
    sculpt::test::skip_test(kMnist + " absent");
  auto dir = sculpt::test::temp_dir("gz");
  for (const char* f : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"})
    fs::copy_file(kMnist + "/" + std::string(f).replace(0, 5, "t10k"), dir + "/" + f);
  fs::resize_file(dir + "/train-labels-idx1-ubyte.gz", 2000);
  CHECK_THROWS_WITH(load_dataset("{name: mnist, dir: " + dir + "}", DataPart::train),
                    Catch::Contains(dir + "/train-labels-idx1-ubyte.gz: "));
}

TEST_CASE("a ragged or out-of-range digits CSV row is named by file and line", "[data]") {
  auto dir = sculpt::test::temp_dir("csv");
  std::string good;
  for (int i = 0; i < 64; ++i) good += "1,";
  good += "3\n";
  write_bytes(dir + "/ragged.csv", good + good + "1,2,3\n");
  CHECK_THROWS_WITH(load_dataset("{name: digits, file: " + dir + "/ragged.csv}", DataPart::train),
                    Catch::Contains(dir + "/ragged.csv:3: expected 65 values"));
  write_bytes(dir + "/range.csv", good + "17," + good.substr(2));
  CHECK_THROWS_WITH(
      load_dataset("{name: digits, file: " + dir + "/range.csv}", DataPart::train),
      Catch::Contains(dir + "/range.csv:2: column 1: expected an integer in [0, 16], got '17'"));
  write_bytes(dir + "/ok.csv", good + good);
  CHECK(load_dataset("{name: digits, file: " + dir + "/ok.csv}", DataPart::train)->size() == 2);
}
