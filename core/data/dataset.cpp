#include "core/data/dataset.h"

#include <ATen/ATen.h>

#include "core/error.h"

namespace sculpt::data {

Dataset::Dataset(at::Tensor inputs, at::Tensor targets, DataSpec spec)
    : inputs_(std::move(inputs)), targets_(std::move(targets)), spec_(std::move(spec)) {
  SCULPT_ASSERT(inputs_.size(0) == targets_.size(0), "inputs and targets differ in rows");
  size_ = inputs_.size(0);
}

Dataset Dataset::subset(const at::Tensor& index) const {
  return Dataset(inputs_.index_select(0, index), targets_.index_select(0, index), spec_);
}

Split split_dataset(const Dataset& all, double val_fraction, int64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed));
  auto perm = at::randperm(all.size(), gen, at::kLong);
  auto n_val = static_cast<int64_t>(static_cast<double>(all.size()) * val_fraction);
  return {all.subset(perm.slice(0, n_val)), all.subset(perm.slice(0, 0, n_val))};
}

void SyntheticBlobsOptions::visit(config::Visitor& v) {
  v.field("samples", samples, "synthetic_blobs: rows generated", config::Range::at_least(2));
  v.field("features", features, "synthetic_blobs: input width", config::Range::at_least(1));
  v.field("classes", classes, "synthetic_blobs: number of Gaussian clusters (one per class)",
          config::Range::at_least(2));
  v.field("spread", spread, "synthetic_blobs: standard deviation of each cluster",
          config::Range::above(0));
  v.field("seed", seed, "synthetic_blobs: generator seed", config::Range::at_least(0));
}

DatasetRegistry& dataset_registry() {
  static DatasetRegistry registry("datasets");
  return registry;
}

namespace {
Dataset make_blobs(const SyntheticBlobsOptions& o) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(o.seed));
  auto centers = at::randn({o.classes, o.features}, gen) * 3.0;
  auto labels = at::randint(o.classes, {o.samples}, gen, at::kLong);
  auto x = centers.index_select(0, labels) + at::randn({o.samples, o.features}, gen) * o.spread;
  return Dataset(x, labels, DataSpec{{o.features}, o.classes});
}
}  // namespace

void register_builtin_datasets(DatasetRegistry& r) {
  r.add(
      "synthetic_blobs", "Gaussian clusters in feature space, one per class; generated, no files",
      [](const config::DataConfig& c) {
        return std::make_unique<Dataset>(
            make_blobs(c.options ? dynamic_cast<const SyntheticBlobsOptions&>(*c.options)
                                 : SyntheticBlobsOptions{}));
      },
      [] { return std::make_shared<SyntheticBlobsOptions>(); });
}

}  // namespace sculpt::data
