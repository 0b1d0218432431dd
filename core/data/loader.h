// Batches of a Dataset: per-epoch shuffling from (seed, epoch), optional drop_last, the batch
// transforms of transforms.h, and a background thread that prepares the next batches while the
// caller computes. Batch k of epoch e is a pure function of (seed, e, k): its rows come from the
// epoch's permutation and its crops and flips from a generator seeded with (seed, e, k), so
// identical seeds give identical batches whatever the prefetch depth, timing or resume point.
#pragma once

#include <ATen/core/Tensor.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/config/config.h"
#include "core/data/dataset.h"

namespace sculpt::data {

struct Batch {
  at::Tensor inputs;
  at::Tensor targets;
  at::Tensor rows;  // int64 [B]: the rows' positions in the dataset the loader reads
  int64_t size() const { return inputs.size(0); }
};

// How a Loader batches and transforms (defaults: in order, nothing dropped or transformed,
// batches made on the calling thread).
struct LoaderOptions {
  bool shuffle = false;                   // a new permutation every epoch
  bool drop_last = false;                 // drop the last incomplete batch of an epoch
  uint64_t seed = 0;                      // seeds the permutations and the augmentations
  std::vector<double> normalize_mean;     // per channel (dim 1) of float inputs; empty: off
  std::vector<double> normalize_std;      // as long as normalize_mean, each > 0
  int64_t crop_padding = 0;               // images: zero-pad by this, random crop back; 0: off
  bool hflip = false;                     // images: flip along W with probability 0.5
  int64_t prefetch = 0;                   // batches prepared ahead on a worker thread; 0: none
  std::string data_name = "the dataset";  // names the data in error messages
  // Distributed sampling: this rank reads its shard of every epoch's order (see shard_order).
  int rank = 0;
  int world_size = 1;
  bool pad_shards = true;  // pad (repeat rows) or drop to equal shards

  // Training: the data.* keys with the run seed. Evaluation: normalization only, in order.
  static LoaderOptions for_training(const config::DataConfig& c, uint64_t seed);
  static LoaderOptions for_evaluation(const config::DataConfig& c);
};

// Rows in one rank's shard of `rows`: ceil(rows / world_size) when padding, floor when dropping.
int64_t shard_size(int64_t rows, int world_size, bool pad);
// Rank `rank`'s share of an epoch's order of the rows, as torch's DistributedSampler makes it:
// the order padded by repeating its first entries (or cut) to a multiple of world_size, then
// every world_size-th entry from position `rank`. Shards are disjoint (up to the padding) and
// together cover the order; batch k of every rank together is batch k of a single process
// with world_size times the batch size.
at::Tensor shard_order(const at::Tensor& order, int rank, int world_size, bool pad);

class Loader {
 public:
  // Throws UserError when the options do not fit the data (crop/flip of non-images, channel
  // counts), naming the data.* key.
  Loader(const Dataset& data, int64_t batch_size, LoaderOptions options);
  Loader(const Dataset& data, int64_t batch_size, bool shuffle, bool drop_last, uint64_t seed);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  int64_t batches_per_epoch() const;
  // Batches of the current epoch that next() has not returned yet.
  int64_t remaining() const { return batches_per_epoch() - cursor_; }
  void start_epoch(int64_t epoch);
  // Skips `batches` batches of the current epoch (resuming mid-epoch).
  void skip(int64_t batches);
  // Fills `b` with the next batch of the epoch; false at the end of the epoch. Rethrows an
  // error of the prefetch thread.
  bool next(Batch& b);

 private:
  Batch make_batch(const at::Tensor& order, int64_t epoch, int64_t k) const;
  void restart_pipeline();  // drops prepared batches; the worker resumes from cursor_
  void work();              // the prefetch thread

  const Dataset& data_;
  int64_t batch_size_;
  LoaderOptions opt_;
  int64_t epoch_ = 0;
  at::Tensor order_;    // this epoch's permutation of the rows
  int64_t cursor_ = 0;  // index of the next batch next() returns

  // Prefetch state, guarded by mutex_. The worker makes batches produce_ < batches_per_epoch()
  // while fewer than opt_.prefetch are ready; `generation_` changes on every restart so that a
  // batch made for an abandoned position is dropped.
  struct Prepared {
    int64_t k;
    Batch batch;
    std::exception_ptr error;
  };
  std::mutex mutex_;
  std::condition_variable wake_worker_, wake_consumer_;
  std::deque<Prepared> ready_;
  int64_t produce_ = 0;
  uint64_t generation_ = 0;
  bool active_ = false;  // set by next(): the worker runs only for an epoch being read
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace sculpt::data
