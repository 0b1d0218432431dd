#include "core/data/dataset.h"

#include <ATen/ATen.h>

#include "core/error.h"

namespace sculpt::data {

Dataset::Dataset(at::Tensor inputs, at::Tensor targets, DataSpec spec)
    : inputs_(std::move(inputs)), targets_(std::move(targets)), spec_(std::move(spec)) {
  SCULPT_ASSERT(inputs_.size(0) == targets_.size(0), "inputs and targets differ in rows");
  size_ = inputs_.size(0);
}

at::Tensor Dataset::input_rows(const at::Tensor& rows) const {
  return inputs_.index_select(0, index_.defined() ? index_.index_select(0, rows) : rows);
}

at::Tensor Dataset::target_rows(const at::Tensor& rows) const {
  return targets_.index_select(0, index_.defined() ? index_.index_select(0, rows) : rows);
}

at::Tensor Dataset::inputs() const {
  return index_.defined() ? inputs_.index_select(0, index_) : inputs_;
}

at::Tensor Dataset::targets() const {
  return index_.defined() ? targets_.index_select(0, index_) : targets_;
}

Dataset Dataset::subset(const at::Tensor& index) const {
  Dataset d = *this;
  d.val_rows_ = at::Tensor();
  d.index_ = index_.defined() ? index_.index_select(0, index) : index.contiguous();
  d.size_ = d.index_.size(0);
  return d;
}

Split split_dataset(const Dataset& all, double val_fraction, int64_t seed) {
  if (all.val_rows().defined() && val_fraction > 0) {
    auto is_val = at::zeros({all.size()}, at::kBool).index_fill_(0, all.val_rows(), true);
    return {all.subset(is_val.logical_not().nonzero().flatten()),
            all.subset(all.val_rows())};
  }
  auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed));
  auto perm = at::randperm(all.size(), gen, at::kLong);
  auto n_val = static_cast<int64_t>(static_cast<double>(all.size()) * val_fraction);
  return {all.subset(perm.slice(0, n_val)), all.subset(perm.slice(0, 0, n_val))};
}

DatasetRegistry& dataset_registry() {
  static DatasetRegistry registry("datasets");
  return registry;
}

void register_builtin_datasets(DatasetRegistry& r) {
  add_synthetic_datasets(r);
  add_file_datasets(r);
  add_image_table_datasets(r);
  add_text_datasets(r);
  add_gr_datasets(r);
  add_text_file_datasets(r);
}

}  // namespace sculpt::data
