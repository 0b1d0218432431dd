// cifar10 and csv on small files written here: decoded values, the train/test parts, gzip, and
// every malformed file named in the error (with the line where there is one).
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>

#include "core/config/config.h"
#include "core/data/dataset.h"
#include "core/error.h"
#include "tests/support/load_dataset.h"
#include "tests/support/process.h"

using sculpt::data::DataPart;
using sculpt::test::load_dataset;
using sculpt::test::write_text;

namespace {
void gzip(const std::string& path) {
  REQUIRE(sculpt::test::run_process("gzip -f " + path).exit_code == 0);
}

// Byte `i` of CIFAR record `k` (after its label byte).
uint8_t cifar_pixel(int k, int i) {
  return static_cast<uint8_t>((k * 37 + i * 11) % 256);
}

// `n` records numbered from `first`: record k has label k % 10 (or `label` when >= 0).
std::string cifar_records(int first, int n, int label = -1) {
  std::string b;
  for (int k = first; k < first + n; ++k) {
    b += static_cast<char>(label >= 0 ? label : k % 10);
    for (int i = 0; i < 3072; ++i) b += static_cast<char>(cifar_pixel(k, i));
  }
  return b;
}

// The five data batches (two records each, numbered 0..9) and a test batch of three (10..12).
void write_cifar(const std::string& dir) {
  for (int b = 1; b <= 5; ++b)
    write_text(dir + "/data_batch_" + std::to_string(b) + ".bin", cifar_records(2 * (b - 1), 2));
  write_text(dir + "/test_batch.bin", cifar_records(10, 3));
}

float standardized(int k, int c, int y, int x) {
  const float mean[] = {0.4914f, 0.4822f, 0.4465f}, stddev[] = {0.2470f, 0.2435f, 0.2616f};
  return (cifar_pixel(k, c * 1024 + y * 32 + x) / 255.0f - mean[c]) / stddev[c];
}
}  // namespace

TEST_CASE("cifar10 decodes labels and channel-major pixels, standardized per channel",
          "[data][cifar10]") {
  auto dir = sculpt::test::temp_dir("cifar");
  write_cifar(dir);
  auto train = load_dataset("{name: cifar10, dir: " + dir + "}", DataPart::train);
  REQUIRE(train->inputs().sizes() == torch::IntArrayRef({10, 3, 32, 32}));
  CHECK(train->spec().input_shape == std::vector<int64_t>{3, 32, 32});
  CHECK(train->spec().num_classes == 10);
  CHECK(train->targets().dtype() == torch::kLong);
  CHECK(train->targets()[7].item<int64_t>() == 7);  // batch 4, second record
  CHECK(train->inputs()[7][2][5][9].item<float>() == Approx(standardized(7, 2, 5, 9)));
  CHECK(train->inputs()[0][0][0][0].item<float>() == Approx(standardized(0, 0, 0, 0)));
  auto test = load_dataset("{name: cifar10, dir: " + dir + "}", DataPart::test);
  REQUIRE(test->size() == 3);
  CHECK(test->targets()[1].item<int64_t>() == 1);  // record 11
  CHECK(test->inputs()[1][1][31][31].item<float>() == Approx(standardized(11, 1, 31, 31)));

  // The parent of cifar-10-batches-bin works too, and gzip'd batches read the same.
  auto parent = sculpt::test::temp_dir("cifar-parent");
  std::filesystem::create_directory(parent + "/cifar-10-batches-bin");
  write_cifar(parent + "/cifar-10-batches-bin");
  gzip(parent + "/cifar-10-batches-bin/data_batch_3.bin");
  auto again = load_dataset("{name: cifar10, dir: " + parent + "}", DataPart::train);
  CHECK(torch::equal(again->inputs(), train->inputs()));
  CHECK(torch::equal(again->targets(), train->targets()));
}

TEST_CASE("malformed CIFAR-10 batches are named with the size or the record", "[data][cifar10]") {
  auto dir = sculpt::test::temp_dir("cifar-bad");
  write_cifar(dir);
  write_text(dir + "/data_batch_2.bin", cifar_records(0, 2) + "abcde");
  CHECK_THROWS_WITH(load_dataset("{name: cifar10, dir: " + dir + "}", DataPart::train),
                    Catch::Contains(dir + "/data_batch_2.bin: 6151 bytes is not a whole number"));
  write_text(dir + "/data_batch_2.bin", "");
  CHECK_THROWS_WITH(load_dataset("{name: cifar10, dir: " + dir + "}", DataPart::train),
                    Catch::Contains(dir + "/data_batch_2.bin: 0 bytes"));
  write_text(dir + "/test_batch.bin", cifar_records(0, 1) + cifar_records(1, 1, 10));
  CHECK_THROWS_WITH(load_dataset("{name: cifar10, dir: " + dir + "}", DataPart::test),
                    Catch::Contains(dir + "/test_batch.bin: record 1: label 10 is not in [0, 9]"));
  write_cifar(dir);
  std::filesystem::remove(dir + "/data_batch_5.bin");
  CHECK_THROWS_WITH(load_dataset("{name: cifar10, dir: " + dir + "}", DataPart::train),
                    Catch::Contains(dir + ": missing data_batch_5.bin(.gz)"));
}

TEST_CASE("csv reads features and class labels by header name; test_file uses the train classes",
          "[data][csv]") {
  auto dir = sculpt::test::temp_dir("csv");
  write_text(dir + "/train.csv", "a, kind ,b\n1.5,2,-3\n\n4,0,5e-1\r\n7,1,8\n");
  write_text(dir + "/test.csv", "a, kind ,b\n9,1,10\n");
  const std::string yaml = "{name: csv, file: " + dir + "/train.csv, test_file: " + dir +
                           "/test.csv, label_column: kind}";
  auto train = load_dataset(yaml, DataPart::train);
  REQUIRE(train->inputs().sizes() == torch::IntArrayRef({3, 2}));
  CHECK(train->spec().input_shape == std::vector<int64_t>{2});
  CHECK(train->spec().num_classes == 3);  // max label 2 + 1
  CHECK(torch::equal(train->inputs(), torch::tensor({{1.5f, -3.0f}, {4.0f, 0.5f}, {7.0f, 8.0f}})));
  CHECK(torch::equal(train->targets(), torch::tensor({2, 0, 1}, torch::kLong)));
  auto test = load_dataset(yaml, DataPart::test);
  CHECK(test->spec().num_classes == 3);
  CHECK(torch::equal(test->inputs(), torch::tensor({{9.0f, 10.0f}})));
  CHECK(torch::equal(test->targets(), torch::tensor({1}, torch::kLong)));
  // Without test_file there is no test part; the last column is the default label.
  auto last =
      load_dataset("{name: csv, target: regression, file: " + dir + "/train.csv}", DataPart::train);
  CHECK(torch::equal(last->targets(), torch::tensor({-3.0f, 0.5f, 8.0f})));
  CHECK(load_dataset("{name: csv, file: " + dir + "/train.csv}", DataPart::test) == nullptr);
}

TEST_CASE("csv regression by column index without a header, standardized with train statistics",
          "[data][csv]") {
  auto dir = sculpt::test::temp_dir("csv-reg");
  write_text(dir + "/train.csv", "0.5,1,10\n-1,2,10\n2.25,3,10\n");
  write_text(dir + "/test.csv", "7,4,13\n");
  const std::string base = "{name: csv, header: false, label_column: 0, target: regression, ";
  auto plain = load_dataset(base + "file: " + dir + "/train.csv}", DataPart::train);
  CHECK(plain->spec().num_classes == 0);
  CHECK(plain->targets().dtype() == torch::kFloat);
  CHECK(torch::equal(plain->targets(), torch::tensor({0.5f, -1.0f, 2.25f})));
  CHECK(
      torch::equal(plain->inputs(), torch::tensor({{1.0f, 10.0f}, {2.0f, 10.0f}, {3.0f, 10.0f}})));

  const std::string yaml =
      base + "standardize: true, file: " + dir + "/train.csv, test_file: " + dir + "/test.csv}";
  // Column 1: mean 2, population std sqrt(2/3); column 2 is constant: centered only.
  const float sd = std::sqrt(2.0f / 3.0f);
  auto train = load_dataset(yaml, DataPart::train);
  CHECK(train->inputs()[0][0].item<float>() == Approx(-1.0f / sd));
  CHECK(train->inputs()[2][0].item<float>() == Approx(1.0f / sd));
  CHECK(train->inputs()[1][1].item<float>() == 0.0f);
  auto test = load_dataset(yaml, DataPart::test);
  CHECK(test->inputs()[0][0].item<float>() == Approx(2.0f / sd));
  CHECK(test->inputs()[0][1].item<float>() == Approx(3.0f));
  CHECK(test->targets()[0].item<float>() == 7.0f);
}

TEST_CASE("a gzip'd csv reads the same as the raw file", "[data][csv]") {
  auto dir = sculpt::test::temp_dir("csv-gz");
  const std::string text = "x,y,label\n1,2,0\n3,4,1\n";
  write_text(dir + "/raw.csv", text);
  write_text(dir + "/packed.csv", text);
  gzip(dir + "/packed.csv");
  auto raw = load_dataset("{name: csv, file: " + dir + "/raw.csv}", DataPart::train);
  auto packed = load_dataset("{name: csv, file: " + dir + "/packed.csv.gz}", DataPart::train);
  CHECK(torch::equal(raw->inputs(), packed->inputs()));
  CHECK(torch::equal(raw->targets(), packed->targets()));
}

TEST_CASE("bad csv files are named by file and line", "[data][csv]") {
  auto dir = sculpt::test::temp_dir("csv-bad");
  auto error_of = [&](const std::string& name, const std::string& text,
                      const std::string& keys = "") {
    write_text(dir + "/" + name, text);
    try {
      load_dataset("{name: csv, file: " + dir + "/" + name + keys + "}", DataPart::train);
    } catch (const sculpt::UserError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(error_of("ragged.csv", "a,b,c\n1,2,0\n3,4\n"),
             Catch::Contains(dir + "/ragged.csv:3: expected 3 columns, got 2"));
  CHECK_THAT(error_of("text.csv", "a,b,c\n1,x1,0\n"),
             Catch::Contains(dir + "/text.csv:2: column 'b' (index 1): expected a finite number, "
                                   "got 'x1'"));
  CHECK_THAT(error_of("empty.csv", "1,2,\n", ", header: false"),
             Catch::Contains(dir + "/empty.csv:1: column 2: expected a finite number, got ''"));
  CHECK_THAT(error_of("label.csv", "a,b\n1,0\n2,1.5\n"),
             Catch::Contains(dir + "/label.csv:3: class label 1.5 is not a non-negative integer"));
  CHECK_THAT(error_of("negative.csv", "a,b\n1,-1\n"),
             Catch::Contains(dir + "/negative.csv:2: class label -1"));
  CHECK_THAT(error_of("column.csv", "a,b\n1,0\n", ", label_column: c"),
             Catch::Contains(dir + "/column.csv: label_column 'c' is neither a column name nor "
                                   "a 0-based index below 2"));
  CHECK_THAT(error_of("header.csv", "a,b\n"), Catch::Contains(dir + "/header.csv: no data rows"));
  // A test label the train file never had would index past the model's outputs.
  write_text(dir + "/train.csv", "a,b\n1,0\n2,1\n");
  write_text(dir + "/test.csv", "a,b\n1,5\n");
  CHECK_THROWS_WITH(
      load_dataset("{name: csv, file: " + dir + "/train.csv, test_file: " + dir + "/test.csv}",
                   DataPart::test),
      Catch::Contains(dir + "/test.csv:2: class label 5 does not occur in the train file"));
}
