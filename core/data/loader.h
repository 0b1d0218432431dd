// Batches of a Dataset: per-epoch shuffling from (seed, epoch) so identical seeds give identical
// batches, optional drop_last. Single-threaded and in memory.
#pragma once

#include <ATen/core/Tensor.h>

#include "core/data/dataset.h"

namespace sculpt::data {

struct Batch {
  at::Tensor inputs;
  at::Tensor targets;
  int64_t size() const { return inputs.size(0); }
};

class Loader {
 public:
  Loader(const Dataset& data, int64_t batch_size, bool shuffle, bool drop_last, uint64_t seed);
  int64_t batches_per_epoch() const;
  void start_epoch(int64_t epoch);
  // Skips `batches` batches of the current epoch (resuming mid-epoch).
  void skip(int64_t batches);
  // Fills `b` with the next batch of the epoch; false at the end of the epoch.
  bool next(Batch& b);

 private:
  const Dataset& data_;
  int64_t batch_size_;
  bool shuffle_, drop_last_;
  uint64_t seed_;
  at::Tensor order_;
  int64_t cursor_ = 0;
};

}  // namespace sculpt::data
