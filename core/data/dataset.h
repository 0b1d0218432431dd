// Datasets: an in-memory set of (input, target) rows that the loader batches. Registered by
// name in the "datasets" family; each describes itself (input shape, classes) so models and
// tasks are sized from the data, not from repeated config keys.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/config/config.h"
#include "core/registry/registry.h"

namespace sculpt::data {

struct DataSpec {
  std::vector<int64_t> input_shape;  // one sample, e.g. {16} or {1, 28, 28}
  int64_t num_classes = 0;           // 0 for regression targets
};

class Dataset {
 public:
  Dataset(at::Tensor inputs, at::Tensor targets, DataSpec spec);
  int64_t size() const { return size_; }
  const DataSpec& spec() const { return spec_; }
  // All rows (gathered when this is a subset).
  at::Tensor inputs() const;
  at::Tensor targets() const;
  // Rows `rows` (int64 positions in this dataset) as one batch.
  at::Tensor input_rows(const at::Tensor& rows) const;
  at::Tensor target_rows(const at::Tensor& rows) const;
  // A view of the rows `index` (an int64 tensor) of this one: it shares the tensors and keeps
  // only the index, so a train/val split of a large dataset costs no copy.
  Dataset subset(const at::Tensor& index) const;

 private:
  at::Tensor inputs_, targets_;
  at::Tensor index_;  // undefined: all rows in order
  DataSpec spec_;
  int64_t size_;
};

// Which part of a dataset to build. `test` is a held-out set the dataset ships (MNIST's t10k)
// or, for generated data, a fresh sample; a factory returns nullptr when there is none.
enum class DataPart { train, test };
using DatasetRegistry = Registry<Dataset, const config::DataConfig&, DataPart>;
DatasetRegistry& dataset_registry();
void register_builtin_datasets(DatasetRegistry& r);

// Deterministic train/validation split by data.val_fraction and data.split_seed.
struct Split {
  Dataset train;
  Dataset val;
};
Split split_dataset(const Dataset& all, double val_fraction, int64_t seed);

struct SyntheticBlobsOptions : config::Section {
  int64_t samples = 2048;  // rows generated, >= 2
  int64_t features = 16;   // input width, >= 1
  int64_t classes = 4;     // Gaussian clusters, one per class, >= 2
  double spread = 1.0;     // cluster standard deviation (centers have unit scale * 3), > 0
  int64_t seed = 0;        // generator seed, >= 0
  void visit(config::Visitor& v) override;
};

struct SyntheticImagesOptions : config::Section {
  int64_t samples = 4096;  // images generated, >= 2
  int64_t size = 16;       // height = width in pixels, >= 8
  int64_t channels = 1;    // image channels, >= 1
  int64_t classes = 10;    // one smooth random prototype per class, >= 2
  double noise = 0.5;      // per-pixel Gaussian noise (prototypes have unit contrast), >= 0
  int64_t max_shift = 2;   // random translation of the prototype in pixels, >= 0
  int64_t seed = 0;        // generator seed, >= 0
  void visit(config::Visitor& v) override;
};

struct IdxDatasetOptions : config::Section {
  std::string dir;  // folder with the four IDX files (train-/t10k- images and labels, .gz or raw)
  void visit(config::Visitor& v) override;
};

struct DigitsOptions : config::Section {
  std::string file;  // digits.csv(.gz): 65 integers per line, 64 pixels (0-16) then the label
  void visit(config::Visitor& v) override;
};

// Registration of the generated (synthetic.cpp) and file-backed (files.cpp) datasets.
void add_synthetic_datasets(DatasetRegistry& r);
void add_file_datasets(DatasetRegistry& r);

}  // namespace sculpt::data
