// Data-parallel gradient reduction (DDP): the parameters and buffers start equal (broadcast from
// rank 0); during backward, a hook after each parameter's gradient accumulation marks it ready
// and, as soon as a bucket is complete, starts its asynchronous all-reduce, so communication
// overlaps the rest of backward. Buckets are filled in reverse registration order (the last
// layers' gradients are ready first), the first one small (first_bucket_mb), the others up to
// bucket_cap_mb; they are launched strictly in bucket order on every rank. finish_backward()
// waits for them; every .grad then holds the mean gradient over the ranks.
//
// Gradients as bucket views (PyTorch DDP's gradient_as_bucket_view): each reduced .grad is a
// view into its bucket's flat storage, so autograd accumulates straight into the bucket and
// nothing is copied back out. Where something replaced .grad since (zero_grad with set_to_none,
// a pass assigning a new tensor), the hook copies it into the bucket once and restores the view.
// Gradient accumulation: micro-batches before the last of a step run with sync=false (local
// sums only, no communication). In a group of one rank without compression the all-reduce is
// the identity: gradients stay where autograd put them (no bucket copy, no collective).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/config/config.h"
#include "core/run/collectives.h"

namespace torch::autograd {
struct Node;
}

namespace sculpt::distributed {

struct DdpOptions {
  double bucket_cap_mb = 25;
  double first_bucket_mb = 1;
  bool find_unused_parameters = false;
  std::string compression = "none";  // none | bf16 | fp16
  // Fill the buckets also in a group of one rank without compression, where the reduction is
  // the identity (bench_ddp measures that path's fixed cost with it); not a config key.
  bool buckets_at_world_1 = false;
  static DdpOptions from(const config::DistributedConfig& c);
};

// Timing of the synchronised backward passes (for the overlap benchmark): the span from the
// first bucket launch to the last completion, and the part of it after backward had ended
// (communication not hidden behind backward).
struct DdpStats {
  int64_t reductions = 0;
  int64_t grad_copies = 0;  // gradients copied into their bucket (.grad was not its view)
  double comm_s = 0;
  double exposed_s = 0;
};

class DataParallel {
 public:
  // `params` in registration order, `names` beside them (for errors). Parameters whose
  // requires_grad is off in a step (frozen by a pass) take no part in it. Broadcasts params and buffers from rank 0 and checks that every rank has
  // the same parameter shapes.
  DataParallel(std::vector<at::Tensor> params, std::vector<std::string> names,
               std::vector<at::Tensor> buffers, Collectives& comm, DdpOptions options);
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  // Before a backward pass: whether it reduces (the last micro-batch of a step) or only
  // accumulates locally (no_sync).
  void begin_backward(bool sync);
  // After a synchronising backward pass: launches what is left, waits, and sets every .grad to
  // the mean over the ranks. With find_unused_parameters, gradients no rank produced stay as
  // they were; without it, a parameter without gradient is an error naming it.
  void finish_backward();
  // Rank 0's buffers (e.g. BatchNorm statistics) to every rank.
  void broadcast_buffers();

  // Parameter indices (into the trained parameters) of every bucket, in launch order.
  std::vector<std::vector<size_t>> bucket_params() const;
  // Whether parameter i's .grad is a view into its bucket.
  bool grad_in_bucket(size_t i) const;
  const DdpStats& stats() const { return stats_; }

 private:
  struct Bucket {
    std::vector<size_t> params;
    at::Tensor flat;  // the gradients, concatenated
    at::Tensor wire;  // what travels (flat, or its 16-bit copy)
    size_t pending = 0;
    std::unique_ptr<Collectives::Pending> work;
    std::string what;
  };
  struct Slot {
    size_t bucket = 0;
    int64_t offset = 0;
    at::Tensor view;  // the parameter's part of the bucket, shaped like the parameter
  };
  void on_grad(size_t i);  // after autograd accumulated parameter i's gradient
  void add_hooks();  // on the parameters that require grad and have none yet
  void launch_ready();  // starts the complete buckets in order
  // .grad becomes the bucket view holding its value (already divided by the world size when
  // the bucket travels uncompressed: the division rides on the copy).
  void into_bucket(size_t i);
  void reset();

  std::vector<at::Tensor> params_;
  std::vector<std::string> names_;
  std::vector<at::Tensor> buffers_;
  // The parameters' gradient accumulators (kept alive: a parameter holds only a weak
  // reference) and the keys of our post hooks on them.
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;
  std::vector<uintptr_t> hooks_;
  std::vector<Slot> slots_;
  std::vector<char> ready_;
  std::vector<char> divided_;  // this pass: the bucket part holds gradient / world size
  std::vector<Bucket> buckets_;
  size_t next_launch_ = 0;
  bool sync_ = false;  // armed by begin_backward(true) until finish_backward()
  bool compressed_ = false;  // buckets travel in bf16/fp16
  bool identity_ = false;    // one rank, no compression: the reduction changes nothing
  double first_launch_ = -1;
  Collectives& comm_;
  DdpOptions opt_;
  DdpStats stats_;
  std::mutex mutex_;
};

}  // namespace sculpt::distributed
