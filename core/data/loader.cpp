#include "core/data/loader.h"

#include <ATen/ATen.h>

namespace sculpt::data {

Loader::Loader(const Dataset& data, int64_t batch_size, bool shuffle, bool drop_last, uint64_t seed)
    : data_(data), batch_size_(batch_size), shuffle_(shuffle), drop_last_(drop_last), seed_(seed) {
  start_epoch(0);
}

int64_t Loader::batches_per_epoch() const {
  int64_t n = data_.size();
  return drop_last_ ? n / batch_size_ : (n + batch_size_ - 1) / batch_size_;
}

void Loader::start_epoch(int64_t epoch) {
  cursor_ = 0;
  if (shuffle_) {
    auto gen =
        at::make_generator<at::CPUGeneratorImpl>(seed_ * 1000003ull + static_cast<uint64_t>(epoch));
    order_ = at::randperm(data_.size(), gen, at::kLong);
  } else {
    order_ = at::arange(data_.size(), at::kLong);
  }
}

void Loader::skip(int64_t batches) {
  cursor_ = std::min(data_.size(), cursor_ + batches * batch_size_);
}

bool Loader::next(Batch& b) {
  int64_t left = data_.size() - cursor_;
  if (left <= 0 || (drop_last_ && left < batch_size_)) return false;
  int64_t n = std::min(batch_size_, left);
  auto idx = order_.slice(0, cursor_, cursor_ + n);
  cursor_ += n;
  b.inputs = data_.input_rows(idx);
  b.targets = data_.target_rows(idx);
  return true;
}

}  // namespace sculpt::data
