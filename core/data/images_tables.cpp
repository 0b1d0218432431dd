// CIFAR-10 (the binary batches) and tabular CSV files, .gz or raw. Every malformed file is a
// UserError naming the file (and the line or record).
//  cifar10: records of 1 label byte + 3072 pixel bytes (3x32x32, channel-major); float
//           [N, 3, 32, 32] scaled to [0, 1], standardized per channel with the published stats.
//  csv:     float features [N, F], one column the target (integer class or float value); the
//           test file is read with the train file's label column, classes and statistics.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/data/dataset.h"
#include "core/data/file_input.h"
#include "core/error.h"

namespace sculpt::data {

void Cifar10Options::visit(config::Visitor& v) {
  v.directory("dir", dir,
              "cifar10: folder with data_batch_1..5.bin and test_batch.bin (.gz or raw), or "
              "the folder holding cifar-10-batches-bin",
              config::Need::required);
}

void CsvDatasetOptions::visit(config::Visitor& v) {
  v.file("file", file, "csv: training rows (.csv or .csv.gz), comma-separated, no quoting",
         config::Need::required);
  v.file("test_file", test_file, "csv: held-out rows with the same columns (the test part)");
  v.field("label_column", label_column,
          "csv: target column, a header name or a 0-based index; empty: the last column");
  v.field("header", header, "csv: the first line holds the column names");
  v.choice("target", target, {"classification", "regression"},
           "csv: classification (non-negative integer labels) or regression (float targets)");
  v.field("standardize", standardize,
          "csv: z-score the features with the train file's mean and std (both parts)");
}

namespace {

constexpr int64_t kCifarRecord = 1 + 3 * 32 * 32;
// Bounds a small file cannot push past: the model's input and output widths follow them.
constexpr size_t kMaxColumns = 1 << 16;
constexpr int64_t kMaxClasses = 1 << 16;

// Records of one batch file as uint8 [n, 3073].
at::Tensor read_cifar_batch(const std::string& path) {
  std::string b = read_maybe_gz(path);
  SCULPT_CHECK(!b.empty() && b.size() % kCifarRecord == 0, path, ": ", b.size(),
               " bytes is not a whole number of ", kCifarRecord,
               "-byte CIFAR-10 records (1 label byte, 3072 pixels)");
  const auto n = static_cast<int64_t>(b.size()) / kCifarRecord;
  auto t = at::empty({n, kCifarRecord}, at::kByte);
  std::memcpy(t.data_ptr(), b.data(), b.size());
  const uint8_t* p = t.data_ptr<uint8_t>();
  for (int64_t i = 0; i < n; ++i)
    SCULPT_CHECK(p[i * kCifarRecord] <= 9, path, ": record ", i, ": label ",
                 int(p[i * kCifarRecord]), " is not in [0, 9]");
  return t;
}

std::unique_ptr<Dataset> load_cifar10(const Cifar10Options& o, DataPart part) {
  namespace fs = std::filesystem;
  std::string dir = o.dir;
  const bool here = fs::exists(fs::path(dir) / "data_batch_1.bin") ||
                    fs::exists(fs::path(dir) / "data_batch_1.bin.gz");
  if (!here && fs::is_directory(fs::path(dir) / "cifar-10-batches-bin"))
    dir = (fs::path(dir) / "cifar-10-batches-bin").string();
  std::vector<at::Tensor> batches;
  if (part == DataPart::train) {
    for (int i = 1; i <= 5; ++i)
      batches.push_back(
          read_cifar_batch(find_maybe_gz(dir, "data_batch_" + std::to_string(i) + ".bin")));
  } else {
    batches.push_back(read_cifar_batch(find_maybe_gz(dir, "test_batch.bin")));
  }
  auto records = batches.size() == 1 ? batches[0] : at::cat(batches);
  batches.clear();
  const int64_t n = records.size(0);
  auto labels = records.select(1, 0).to(at::kLong);
  // Published per-channel statistics of the training images (after scaling to [0, 1]).
  auto mean = at::tensor({0.4914f, 0.4822f, 0.4465f}).view({1, 3, 1, 1});
  auto stddev = at::tensor({0.2470f, 0.2435f, 0.2616f}).view({1, 3, 1, 1});
  auto x = records.slice(1, 1).reshape({n, 3, 32, 32}).to(at::kFloat).div_(255.0);
  x.sub_(mean).div_(stddev);
  return std::make_unique<Dataset>(x, labels, DataSpec{{3, 32, 32}, 10});
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> fields;
  for (size_t begin = 0;;) {
    size_t comma = line.find(',', begin);
    fields.push_back(trim(line.substr(begin, comma - begin)));
    if (comma == std::string_view::npos) return fields;
    begin = comma + 1;
  }
}

// One CSV file: its header (or column numbers) and all values, row-major.
struct CsvTable {
  std::vector<std::string> names;  // column names; empty strings without a header
  std::vector<double> values;      // rows * names.size()
  std::vector<int64_t> line_of;    // the file line of each row
  int64_t rows = 0;
};

CsvTable read_csv(const std::string& path, bool header) {
  CsvTable t;
  size_t columns = 0;
  for_each_line(read_maybe_gz(path), [&](std::string_view line, int64_t line_no) {
    auto fields = split_fields(line);
    if (columns == 0) {
      columns = fields.size();
      SCULPT_CHECK(columns <= kMaxColumns, path, ":", line_no, ": ", columns,
                   " columns, more than the limit of ", kMaxColumns);
      for (size_t i = 0; i < columns; ++i) t.names.push_back(header ? std::string(fields[i]) : "");
      if (header) return;
    }
    SCULPT_CHECK(fields.size() == columns, path, ":", line_no, ": expected ", columns,
                 " columns, got ", fields.size());
    for (size_t i = 0; i < columns; ++i) {
      std::string text(fields[i]);
      char* end = nullptr;
      const double v = std::strtod(text.c_str(), &end);
      SCULPT_CHECK(!text.empty() && *end == '\0' && std::isfinite(v), path, ":", line_no,
                   ": column ", header ? "'" + t.names[i] + "' (index " : "", i, header ? ")" : "",
                   ": expected a finite number, got '", text, "'");
      t.values.push_back(v);
    }
    t.line_of.push_back(line_no);
    ++t.rows;
  });
  SCULPT_CHECK(t.rows > 0, path, ": no data rows");
  SCULPT_CHECK(columns >= 2, path, ": ", columns,
               " column(s); a feature column and a label column are needed");
  return t;
}

int64_t label_index(const CsvDatasetOptions& o, const CsvTable& t) {
  const auto columns = static_cast<int64_t>(t.names.size());
  if (o.label_column.empty()) return columns - 1;
  auto named = std::find(t.names.begin(), t.names.end(), o.label_column);
  if (o.header && named != t.names.end()) return named - t.names.begin();
  const bool digits = std::all_of(o.label_column.begin(), o.label_column.end(),
                                  [](char c) { return c >= '0' && c <= '9'; });
  SCULPT_CHECK(digits && o.label_column.size() < 10 && std::stoll(o.label_column) < columns, o.file,
               ": label_column '", o.label_column,
               "' is neither a column name nor a 0-based index below ", columns);
  return std::stoll(o.label_column);
}

// Features float [rows, columns - 1] and the label column as doubles.
std::pair<at::Tensor, std::vector<double>> split_label(const CsvTable& t, int64_t label) {
  const auto columns = static_cast<int64_t>(t.names.size());
  auto x = at::empty({t.rows, columns - 1}, at::kFloat);
  float* px = x.data_ptr<float>();
  std::vector<double> y;
  for (int64_t r = 0; r < t.rows; ++r)
    for (int64_t c = 0; c < columns; ++c) {
      const double v = t.values[static_cast<size_t>(r * columns + c)];
      if (c == label)
        y.push_back(v);
      else
        *px++ = static_cast<float>(v);
    }
  return {x, y};
}

// Class labels of `path` as int64 [rows]; each must be an integer in [0, limit) (limit 0: any).
at::Tensor class_labels(const std::string& path, const CsvTable& t, const std::vector<double>& y,
                        int64_t limit) {
  auto out = at::empty({t.rows}, at::kLong);
  int64_t* po = out.data_ptr<int64_t>();
  for (int64_t r = 0; r < t.rows; ++r) {
    const double v = y[static_cast<size_t>(r)];
    SCULPT_CHECK(v >= 0 && v == std::floor(v) && v < 1e15, path, ":", t.line_of[r],
                 ": class label ", v, " is not a non-negative integer");
    SCULPT_CHECK(v < kMaxClasses, path, ":", t.line_of[r], ": class label ", v,
                 " is above the limit of ", kMaxClasses - 1, " (a model's output per class)");
    SCULPT_CHECK(limit == 0 || v < static_cast<double>(limit), path, ":", t.line_of[r],
                 ": class label ", v, " does not occur in the train file (classes 0..", limit - 1,
                 ")");
    po[r] = static_cast<int64_t>(v);
  }
  return out;
}

std::unique_ptr<Dataset> load_csv(const CsvDatasetOptions& o, DataPart part) {
  if (part == DataPart::test && o.test_file.empty()) return nullptr;
  const CsvTable train = read_csv(o.file, o.header);
  const int64_t label = label_index(o, train);
  auto [x, y] = split_label(train, label);
  const bool classify = o.target == "classification";
  DataSpec spec{{x.size(1)}, 0};
  at::Tensor targets;
  if (classify) {
    targets = class_labels(o.file, train, y, 0);
    spec.num_classes = targets.max().item<int64_t>() + 1;
  }
  // Population statistics of the train features; a constant feature is only centered.
  at::Tensor mean, stddev;
  if (o.standardize) {
    mean = x.mean(0);
    stddev = x.std(0, /*unbiased=*/false);
    stddev.masked_fill_(stddev.eq(0), 1.0);
  }
  if (part == DataPart::test) {
    const CsvTable test = read_csv(o.test_file, o.header);
    SCULPT_CHECK(test.names.size() == train.names.size(), o.test_file, ": ", test.names.size(),
                 " columns, but the train file ", o.file, " has ", train.names.size());
    SCULPT_CHECK(test.names == train.names, o.test_file,
                 ":1: the header differs from the train file's (", o.file, ")");
    std::tie(x, y) = split_label(test, label);
    if (classify) targets = class_labels(o.test_file, test, y, spec.num_classes);
  }
  if (!classify) targets = at::tensor(y, at::kDouble).to(at::kFloat);
  if (o.standardize) x = (x - mean) / stddev;
  return std::make_unique<Dataset>(x, targets, spec);
}

}  // namespace

void add_image_table_datasets(DatasetRegistry& r) {
  r.add(
      "cifar10",
      "CIFAR-10, 3x32x32 colour images (binary batches, .gz or raw); test part: "
      "test_batch",
      [](const config::DataConfig& c, DataPart part) {
        return load_cifar10(options_of<Cifar10Options>(c), part);
      },
      [] { return std::make_shared<Cifar10Options>(); });
  r.add(
      "csv", "tabular rows from a CSV file (classification or regression); test part: test_file",
      [](const config::DataConfig& c, DataPart part) {
        return load_csv(options_of<CsvDatasetOptions>(c), part);
      },
      [] { return std::make_shared<CsvDatasetOptions>(); });
}

}  // namespace sculpt::data
