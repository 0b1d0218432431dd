#include "core/data/loader.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <algorithm>

#include "core/data/transforms.h"
#include "core/error.h"

namespace sculpt::data {

namespace {
uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Seed of batch k of `epoch`: independent of which thread makes the batch, and when.
uint64_t batch_seed(uint64_t seed, int64_t epoch, int64_t k) {
  return splitmix64(splitmix64(splitmix64(seed) ^ static_cast<uint64_t>(epoch)) ^
                    static_cast<uint64_t>(k));
}

// The prefetch thread computes with one intra-op thread, as data workers usually do. ATen's
// OpenMP threads are per calling thread: a second team of two beside the training step's on a
// 2-core machine made every op of both wait for the other (pad + crop 10x slower when measured
// on a busy machine). ATen's set_num_threads() would also change the default of every thread
// started later, so the OpenMP runtime's own per-thread setting is called when one is loaded.
void use_one_intra_op_thread() {
  at::get_num_threads();  // ATen's lazy per-thread init first; it would undo the call below
  using SetNumThreads = void (*)(int);
  if (auto set = reinterpret_cast<SetNumThreads>(dlsym(RTLD_DEFAULT, "omp_set_num_threads")))
    set(1);
}

std::string shape_str(const std::vector<int64_t>& sample) {
  std::string s = "[N";
  for (int64_t d : sample) s += ", " + std::to_string(d);
  return s + "]";
}

void check_options(const Dataset& data, const LoaderOptions& o) {
  const auto& shape = data.spec().input_shape;
  const char* augment_key = o.crop_padding > 0 ? "data.random_crop_padding"
                            : o.hflip          ? "data.hflip"
                                               : nullptr;
  SCULPT_CHECK(o.crop_padding >= 0, "data.random_crop_padding: expected >= 0, got ",
               o.crop_padding);
  SCULPT_CHECK(o.prefetch >= 0, "data.prefetch: expected >= 0, got ", o.prefetch);
  if (augment_key)
    SCULPT_CHECK(shape.size() == 3, augment_key, ": needs image inputs [N, C, H, W]; ", o.data_name,
                 " has inputs ", shape_str(shape));
  if (o.normalize_mean.empty() && o.normalize_std.empty()) return;
  SCULPT_CHECK(o.normalize_mean.size() == o.normalize_std.size(),
               "data.normalize_std: expected one value per channel like data.normalize_mean (",
               o.normalize_mean.size(), "), got ", o.normalize_std.size());
  for (double s : o.normalize_std)
    SCULPT_CHECK(s > 0, "data.normalize_std: expected values > 0, got ", s);
  const auto dtype = data.input_rows(at::zeros({0}, at::kLong)).scalar_type();
  SCULPT_CHECK(at::isFloatingType(dtype), "data.normalize_mean: needs float inputs; ", o.data_name,
               " has ", c10::toString(dtype), " inputs (token ids)");
  SCULPT_CHECK(!shape.empty() && shape[0] == static_cast<int64_t>(o.normalize_mean.size()),
               "data.normalize_mean: ", o.normalize_mean.size(), " channel values, but ",
               o.data_name, " has inputs ", shape_str(shape), " with ",
               shape.empty() ? 1 : shape[0], " channels (dim 1)");
}
}  // namespace

LoaderOptions LoaderOptions::for_training(const config::DataConfig& c, uint64_t seed) {
  LoaderOptions o = for_evaluation(c);
  o.shuffle = c.shuffle;
  o.drop_last = c.drop_last;
  o.seed = seed;
  o.crop_padding = c.random_crop_padding;
  o.hflip = c.hflip;
  return o;
}

LoaderOptions LoaderOptions::for_evaluation(const config::DataConfig& c) {
  LoaderOptions o;
  o.normalize_mean = c.normalize_mean;
  o.normalize_std = c.normalize_std;
  o.prefetch = c.prefetch;
  o.data_name = "dataset " + c.name;
  return o;
}

Loader::Loader(const Dataset& data, int64_t batch_size, LoaderOptions options)
    : data_(data), batch_size_(batch_size), opt_(std::move(options)) {
  SCULPT_ASSERT(batch_size_ >= 1, "batch size ", batch_size_);
  check_options(data_, opt_);
  start_epoch(0);
}

Loader::Loader(const Dataset& data, int64_t batch_size, bool shuffle, bool drop_last, uint64_t seed)
    : Loader(data, batch_size, [&] {
        LoaderOptions o;
        o.shuffle = shuffle;
        o.drop_last = drop_last;
        o.seed = seed;
        return o;
      }()) {}

Loader::~Loader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_worker_.notify_all();
  if (worker_.joinable()) worker_.join();
}

int64_t shard_size(int64_t rows, int world_size, bool pad) {
  return pad ? (rows + world_size - 1) / world_size : rows / world_size;
}

at::Tensor shard_order(const at::Tensor& order, int rank, int world_size, bool pad) {
  SCULPT_ASSERT(world_size >= 1 && rank >= 0 && rank < world_size, "rank ", rank, " of ",
                world_size);
  if (world_size == 1) return order;
  const int64_t n = order.size(0);
  const int64_t total = shard_size(n, world_size, pad) * world_size;
  at::Tensor full = order;
  if (total > n) {  // repeat the order's first entries (the whole order again when tiny)
    std::vector<at::Tensor> parts{order};
    for (int64_t have = n; have < total; have += n) parts.push_back(order);
    full = at::cat(parts);
  }
  return full.slice(0, rank, total, world_size).contiguous();
}

int64_t Loader::batches_per_epoch() const {
  int64_t n = shard_size(data_.size(), opt_.world_size, opt_.pad_shards);
  return opt_.drop_last ? n / batch_size_ : (n + batch_size_ - 1) / batch_size_;
}

void Loader::start_epoch(int64_t epoch) {
  at::Tensor order;
  if (opt_.shuffle) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(opt_.seed * 1000003ull +
                                                        static_cast<uint64_t>(epoch));
    order = at::randperm(data_.size(), gen, at::kLong);
  } else {
    order = at::arange(data_.size(), at::kLong);
  }
  order = shard_order(order, opt_.rank, opt_.world_size, opt_.pad_shards);
  std::lock_guard<std::mutex> lock(mutex_);
  epoch_ = epoch;
  order_ = std::move(order);
  cursor_ = 0;
  restart_pipeline();
}

void Loader::skip(int64_t batches) {
  SCULPT_ASSERT(batches >= 0, "skip(", batches, ")");
  std::lock_guard<std::mutex> lock(mutex_);
  cursor_ = std::min(batches_per_epoch(), cursor_ + batches);
  restart_pipeline();
}

void Loader::restart_pipeline() {
  ++generation_;
  ready_.clear();
  produce_ = cursor_;
  active_ = false;
}

Batch Loader::make_batch(const at::Tensor& order, int64_t epoch, int64_t k) const {
  const int64_t begin = k * batch_size_;
  auto idx = order.slice(0, begin, std::min(order.size(0), begin + batch_size_));
  Batch b{data_.input_rows(idx), data_.target_rows(idx), idx};
  if (opt_.crop_padding > 0 || opt_.hflip) {
    // Ranks draw their own crops and flips (rank 0 those of a single process).
    const uint64_t seed = opt_.seed + static_cast<uint64_t>(opt_.rank) * 0x9e3779b97f4a7c15ull;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(batch_seed(seed, epoch, k));
    b.inputs = crop_and_flip(b.inputs, opt_.crop_padding,
                             draw_augmentation(b.size(), opt_.crop_padding, opt_.hflip, gen));
  }
  if (!opt_.normalize_mean.empty())
    b.inputs = normalize(b.inputs, opt_.normalize_mean, opt_.normalize_std);
  return b;
}

bool Loader::next(Batch& b) {
  if (opt_.prefetch == 0) {
    if (cursor_ >= batches_per_epoch()) return false;
    b = make_batch(order_, epoch_, cursor_++);
    return true;
  }
  std::unique_lock<std::mutex> lock(mutex_);
  if (cursor_ >= batches_per_epoch()) return false;
  if (!worker_.joinable()) worker_ = std::thread(&Loader::work, this);
  if (!active_) {
    active_ = true;
    wake_worker_.notify_all();
  }
  wake_consumer_.wait(lock, [&] { return !ready_.empty(); });
  Prepared p = std::move(ready_.front());
  ready_.pop_front();
  SCULPT_ASSERT(p.k == cursor_, "prefetched batch ", p.k, " where batch ", cursor_,
                " was expected");
  ++cursor_;
  lock.unlock();
  wake_worker_.notify_all();
  if (p.error) std::rethrow_exception(p.error);
  b = std::move(p.batch);
  return true;
}

void Loader::work() {
  use_one_intra_op_thread();
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_worker_.wait(lock, [&] {
      return stop_ || (active_ && produce_ < batches_per_epoch() &&
                       static_cast<int64_t>(ready_.size()) < opt_.prefetch);
    });
    if (stop_) return;
    const int64_t k = produce_++;
    const uint64_t generation = generation_;
    const at::Tensor order = order_;
    const int64_t epoch = epoch_;
    lock.unlock();
    Prepared p{k, {}, nullptr};
    try {
      p.batch = make_batch(order, epoch, k);
    } catch (...) {
      p.error = std::current_exception();
    }
    lock.lock();
    if (generation != generation_) continue;  // restarted meanwhile: not wanted any more
    ready_.push_back(std::move(p));
    wake_consumer_.notify_all();
  }
}

}  // namespace sculpt::data
