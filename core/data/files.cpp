// File-backed datasets: MNIST and Fashion-MNIST (IDX, gzip or raw) and scikit-learn's 8x8
// digits (CSV, gzip or raw). Every malformed file is a UserError naming the file (and line).
// Images become float [N, 1, H, W], standardized with the dataset's published mean/std.
#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>
#include <sstream>

#include "core/data/dataset.h"
#include "core/data/file_input.h"
#include "core/error.h"

namespace sculpt::data {

void IdxDatasetOptions::visit(config::Visitor& v) {
  v.directory("dir", dir, "mnist/fashion_mnist: folder with the four IDX files (.gz or raw)",
              config::Need::required);
  v.field("standardize", standardize,
          "mnist/fashion_mnist: subtract the published per-pixel mean and divide by its std; "
          "false: pixels scaled to [0, 1] (a blank pixel is 0, as in the continual-learning "
          "literature's Permuted MNIST)");
}

void DigitsOptions::visit(config::Visitor& v) {
  v.file("file", file, "digits: digits.csv(.gz) with 64 pixels (0-16) and a label per line",
         config::Need::required);
}

namespace {

uint32_t be32(const std::string& b, size_t at) {
  return (uint32_t(uint8_t(b[at])) << 24) | (uint32_t(uint8_t(b[at + 1])) << 16) |
         (uint32_t(uint8_t(b[at + 2])) << 8) | uint32_t(uint8_t(b[at + 3]));
}

// IDX: magic 0x0000 08 <ndim>, then ndim big-endian sizes, then unsigned bytes.
at::Tensor read_idx(const std::string& path, int64_t ndim) {
  const size_t header = 4 + 4 * static_cast<size_t>(ndim);
  std::string b = read_maybe_gz_at_most(path, header);
  SCULPT_CHECK(b.size() >= header, path, ": too short for an IDX file");
  const uint32_t magic = be32(b, 0);
  SCULPT_CHECK(magic == 0x0800u + static_cast<uint32_t>(ndim), path, ": wrong IDX magic 0x",
               std::hex, magic, " (expected 0x", 0x0800 + ndim, ": unsigned bytes, ", std::dec,
               ndim, " dimensions)");
  std::vector<int64_t> dims;
  // The product of the sizes (zeros counted as 1, so that strides stay small too) is checked
  // against a bound before it can wrap around.
  size_t count = 1, span = 1;
  constexpr size_t kMaxBytes = size_t(1) << 40;
  for (int64_t d = 0; d < ndim; ++d) {
    dims.push_back(be32(b, 4 + 4 * static_cast<size_t>(d)));
    const auto dim = std::max<size_t>(static_cast<size_t>(dims.back()), 1);
    span = span > kMaxBytes / dim ? kMaxBytes : span * dim;
  }
  SCULPT_CHECK(span < kMaxBytes, path, ": the IDX header declares more than ", kMaxBytes,
               " bytes of data; refused");
  for (auto dim : dims) count *= static_cast<size_t>(dim);
  b = read_maybe_gz_at_most(path, header + count);  // no more than the header declares
  SCULPT_CHECK(b.size() == header + count, path, ": truncated or oversized IDX file: header says ",
               count, " bytes of data, file has ", b.size() > header + count ? "more" : "",
               b.size() > header + count ? "" : std::to_string(b.size() - header));
  auto t = at::empty(dims, at::kByte);
  if (count > 0) std::memcpy(t.data_ptr(), b.data() + header, count);  // empty: no data_ptr
  return t;
}

std::unique_ptr<Dataset> load_idx(const IdxDatasetOptions& o, DataPart part, double mean,
                                  double stddev) {
  const std::string stem = part == DataPart::train ? "train" : "t10k";
  auto images = read_idx(find_maybe_gz(o.dir, stem + "-images-idx3-ubyte"), 3);
  auto labels = read_idx(find_maybe_gz(o.dir, stem + "-labels-idx1-ubyte"), 1);
  SCULPT_CHECK(images.size(0) == labels.size(0), o.dir, ": ", images.size(0), " images but ",
               labels.size(0), " labels in the ", stem, " files");
  if (labels.numel() > 0) {
    const int64_t top = labels.max().item<int64_t>();
    SCULPT_CHECK(top <= 9, find_maybe_gz(o.dir, stem + "-labels-idx1-ubyte"), ": label ", top,
                 " is not in [0, 9]");
  }
  auto x = images.to(at::kFloat).div_(255.0);
  if (o.standardize) x.sub_(mean).div_(stddev);
  x = x.unsqueeze(1);
  const int64_t h = images.size(1), w = images.size(2);
  return std::make_unique<Dataset>(x, labels.to(at::kLong), DataSpec{{1, h, w}, 10});
}

std::unique_ptr<Dataset> load_digits(const DigitsOptions& o) {
  std::vector<float> pixels;
  std::vector<int64_t> labels;
  for_each_line(read_maybe_gz(o.file), [&](std::string_view line, int64_t line_no) {
    std::istringstream fields{std::string(line)};
    std::string field;
    int count = 0;
    while (std::getline(fields, field, ',')) {
      char* end = nullptr;
      long v = std::strtol(field.c_str(), &end, 10);
      SCULPT_CHECK(end != field.c_str() && *end == '\0' && v >= 0 && v <= 16, o.file, ":", line_no,
                   ": column ", count + 1, ": expected an integer in [0, 16], got '", field, "'");
      if (count < 64)
        pixels.push_back(static_cast<float>(v) / 16.0f);
      else
        labels.push_back(v);
      ++count;
    }
    SCULPT_CHECK(count == 65, o.file, ":", line_no,
                 ": expected 65 values (64 pixels and a label), got ", count);
    SCULPT_CHECK(labels.back() <= 9, o.file, ":", line_no, ": label ", labels.back(),
                 " is not a digit");
  });
  const auto n = static_cast<int64_t>(labels.size());
  SCULPT_CHECK(n > 0, o.file, ": no rows");
  auto x = at::from_blob(pixels.data(), {n, 1, 8, 8}, at::kFloat).clone();
  auto y = at::from_blob(labels.data(), {n}, at::kLong).clone();
  return std::make_unique<Dataset>(x, y, DataSpec{{1, 8, 8}, 10});
}

}  // namespace

void add_file_datasets(DatasetRegistry& r) {
  // Published per-pixel statistics of the training sets (after scaling to [0, 1]).
  r.add(
      "mnist", "MNIST digits, 28x28 (IDX files, .gz or raw); test part: t10k",
      [](const config::DataConfig& c, DataPart part) {
        return load_idx(options_of<IdxDatasetOptions>(c), part, 0.1307, 0.3081);
      },
      [] { return std::make_shared<IdxDatasetOptions>(); });
  r.add(
      "fashion_mnist", "Fashion-MNIST, 28x28 (IDX files, .gz or raw); test part: t10k",
      [](const config::DataConfig& c, DataPart part) {
        return load_idx(options_of<IdxDatasetOptions>(c), part, 0.2860, 0.3530);
      },
      [] { return std::make_shared<IdxDatasetOptions>(); });
  r.add(
      "digits", "scikit-learn's 8x8 digits (CSV, .gz or raw), 1797 images; no test part",
      [](const config::DataConfig& c, DataPart part) -> std::unique_ptr<Dataset> {
        if (part == DataPart::test) return nullptr;
        return load_digits(options_of<DigitsOptions>(c));
      },
      [] { return std::make_shared<DigitsOptions>(); });
}

}  // namespace sculpt::data
