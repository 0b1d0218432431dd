#include "distributed/ddp.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <functional>

#include "core/error.h"
#include "core/logging/logging.h"

namespace sculpt::distributed {

DdpOptions DdpOptions::from(const config::DistributedConfig& c) {
  DdpOptions o;
  o.bucket_cap_mb = c.bucket_cap_mb;
  o.first_bucket_mb = c.first_bucket_mb;
  o.find_unused_parameters = c.find_unused_parameters;
  o.compression = c.grad_compression;
  return o;
}

namespace {
// Runs after a gradient accumulator has written its parameter's .grad.
class GradReady final : public torch::autograd::FunctionPostHook {
 public:
  explicit GradReady(std::function<void()> ready) : ready_(std::move(ready)) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list&) override {
    ready_();
    return outputs;
  }

 private:
  std::function<void()> ready_;
};

// The part of `flat` from `offset` on, shaped like `p` (contiguous). It shares the storage but
// is no autograd view, so optimizers may detach_() it as any gradient (torch refuses that on
// views: "Can't detach views in-place").
at::Tensor bucket_part(const at::Tensor& flat, int64_t offset, const at::Tensor& p) {
  c10::NoGradGuard no_grad;
  std::vector<int64_t> strides(static_cast<size_t>(p.dim()), 1);
  for (int64_t d = p.dim() - 2; d >= 0; --d) strides[d] = strides[d + 1] * p.size(d + 1);
  return at::empty({0}, flat.options()).set_(flat.storage(), offset, p.sizes(), strides);
}

// Tensors of one dtype flattened into one, broadcast from rank 0, copied back.
void broadcast_flat(std::vector<at::Tensor>& tensors, Collectives& comm, const std::string& what) {
  if (!comm.distributed()) return;  // one rank: its tensors are rank 0's (the trainer calls
                                    // this every step, for the buffers)
  c10::NoGradGuard no_grad;
  std::vector<at::ScalarType> dtypes;
  for (const auto& t : tensors)
    if (std::find(dtypes.begin(), dtypes.end(), t.scalar_type()) == dtypes.end())
      dtypes.push_back(t.scalar_type());
  for (auto dtype : dtypes) {
    std::vector<at::Tensor> group;
    for (const auto& t : tensors)
      if (t.scalar_type() == dtype) group.push_back(t.reshape(-1));
    auto flat = at::cat(group);
    comm.broadcast(flat, 0, what);
    int64_t offset = 0;
    for (auto& t : tensors) {
      if (t.scalar_type() != dtype) continue;
      t.copy_(flat.narrow(0, offset, t.numel()).view_as(t));
      offset += t.numel();
    }
  }
}
}  // namespace

DataParallel::DataParallel(std::vector<at::Tensor> params, std::vector<std::string> names,
                           std::vector<at::Tensor> buffers, Collectives& comm, DdpOptions options)
    : buffers_(std::move(buffers)), comm_(comm), opt_(std::move(options)) {
  SCULPT_ASSERT(params.size() == names.size(), params.size(), " parameters, ", names.size(),
                " names");
  // All of them, also those frozen now: a pass may turn requires_grad on and off (every rank
  // alike); finish_backward() skips the ones without it.
  params_ = std::move(params);
  names_ = std::move(names);
  // Every rank must hold the same parameters: compare a signature before any collective on them.
  std::string signature = std::to_string(params_.size()) + " parameters:";
  for (const auto& p : params_) signature += " " + std::to_string(p.numel());
  const auto all = comm_.all_gather(signature, "the DDP parameter shapes");
  for (size_t r = 1; r < all.size(); ++r)
    SCULPT_CHECK(all[r] == all[0], "DDP: rank ", r, " has other parameters than rank 0 (", all[r],
                 " vs ", all[0], "); every rank must build the same model and recipe");
  broadcast_flat(params_, comm_, "the initial parameters from rank 0");
  broadcast_buffers();

  // Buckets, filled from the last parameter back; a new bucket at a dtype/device change.
  const auto mib = [](double mb) { return static_cast<int64_t>(mb * 1024.0 * 1024.0); };
  slots_.resize(params_.size());
  int64_t used = 0;
  for (size_t n = params_.size(); n-- > 0;) {
    const auto& p = params_[n];
    const int64_t bytes = p.numel() * static_cast<int64_t>(p.element_size());
    bool fresh = buckets_.empty();
    if (!fresh) {
      // The bucket being filled is the first (small) one or a later one (bucket_cap_mb).
      const int64_t cap = mib(buckets_.size() == 1 ? opt_.first_bucket_mb : opt_.bucket_cap_mb);
      const auto& first = params_[buckets_.back().params.front()];
      fresh = first.scalar_type() != p.scalar_type() || first.device() != p.device() ||
              used + bytes > cap;
    }
    if (fresh) {
      buckets_.emplace_back();
      used = 0;
    }
    auto& b = buckets_.back();
    slots_[n] = Slot{buckets_.size() - 1, 0};
    b.params.push_back(n);
    used += bytes;
  }
  for (size_t k = 0; k < buckets_.size(); ++k) {
    auto& b = buckets_[k];
    int64_t numel = 0;
    for (size_t i : b.params) {
      slots_[i].offset = numel;
      numel += params_[i].numel();
    }
    const auto& p0 = params_[b.params.front()];
    b.flat = at::zeros({numel}, p0.options().requires_grad(false));
    for (size_t i : b.params) slots_[i].view = bucket_part(b.flat, slots_[i].offset, params_[i]);
    b.what = detail::concat("gradient bucket ", k, " (", b.params.size(), " tensors, ",
                            static_cast<double>(numel * static_cast<int64_t>(p0.element_size())) /
                                (1024.0 * 1024.0),
                            " MiB)");
  }
  compressed_ = opt_.compression == "bf16" || opt_.compression == "fp16";
  identity_ = comm_.world_size() == 1 && !compressed_ && !opt_.buckets_at_world_1;
  ready_.assign(params_.size(), 0);
  divided_.assign(params_.size(), 0);
  accumulators_.resize(params_.size());
  hooks_.assign(params_.size(), 0);
  reset();
  add_hooks();
  log::debug("DDP: ", params_.size(), " parameters in ", buckets_.size(), " buckets");
}

void DataParallel::add_hooks() {
  for (size_t i = 0; i < params_.size(); ++i)
    if (!accumulators_[i] && params_[i].requires_grad()) {
      accumulators_[i] = torch::autograd::impl::grad_accumulator(params_[i]);
      SCULPT_ASSERT(accumulators_[i], "DDP: parameter '", names_[i],
                    "' has no gradient accumulator");
      hooks_[i] = accumulators_[i]->add_post_hook(
          std::make_unique<GradReady>([this, i] { on_grad(i); }));
    }
}

DataParallel::~DataParallel() {
  for (size_t i = 0; i < accumulators_.size(); ++i)
    if (accumulators_[i]) accumulators_[i]->del_post_hook(hooks_[i]);
}

void DataParallel::broadcast_buffers() {
  if (!buffers_.empty()) broadcast_flat(buffers_, comm_, "the buffers from rank 0");
}

std::vector<std::vector<size_t>> DataParallel::bucket_params() const {
  std::vector<std::vector<size_t>> out;
  for (const auto& b : buckets_) out.push_back(b.params);
  return out;
}

bool DataParallel::grad_in_bucket(size_t i) const {
  const auto& g = params_[i].grad();
  const auto& v = slots_[i].view;
  return g.defined() && g.data_ptr() == v.data_ptr() && g.sizes() == v.sizes();
}

void DataParallel::into_bucket(size_t i) {
  if (grad_in_bucket(i)) return;
  auto& g = params_[i].mutable_grad();
  const int n = comm_.world_size();
  if (n > 1 && !compressed_) {
    at::div_out(slots_[i].view, g, at::scalar_tensor(static_cast<double>(n), at::kDouble));
    divided_[i] = 1;
  } else {
    slots_[i].view.copy_(g);
  }
  g = slots_[i].view;
  ++stats_.grad_copies;
}

void DataParallel::reset() {
  std::fill(ready_.begin(), ready_.end(), 0);
  std::fill(divided_.begin(), divided_.end(), 0);
  for (auto& b : buckets_) {
    b.pending = b.params.size();
    b.work.reset();
  }
  next_launch_ = 0;
  first_launch_ = -1;
}

void DataParallel::begin_backward(bool sync) {
  add_hooks();  // parameters a pass has unfrozen since
  std::lock_guard<std::mutex> lock(mutex_);
  sync_ = sync;
  reset();
}

void DataParallel::on_grad(size_t i) {
  if (!sync_) return;  // no_sync: the gradient accumulates wherever .grad is
  c10::NoGradGuard no_grad;
  std::lock_guard<std::mutex> lock(mutex_);
  if (ready_[i]) return;
  ready_[i] = 1;
  if (identity_) return;  // the mean over one rank is the gradient itself
  into_bucket(i);
  if (--buckets_[slots_[i].bucket].pending == 0) launch_ready();
}

void DataParallel::launch_ready() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) {
    auto& b = buckets_[next_launch_++];
    // The mean: divide first, so 16-bit sums of many ranks cannot overflow.
    const double n = static_cast<double>(comm_.world_size());
    if (compressed_) {
      b.wire = b.flat.div(n).to(opt_.compression == "bf16" ? at::kBFloat16 : at::kHalf);
    } else {
      if (n != 1) {  // the parts the copy into the bucket has not divided yet
        const auto done = std::count_if(b.params.begin(), b.params.end(),
                                        [&](size_t i) { return divided_[i] != 0; });
        if (done == 0) {
          b.flat.div_(n);
        } else {
          for (size_t i : b.params)
            if (!divided_[i]) slots_[i].view.div_(n);
        }
      }
      b.wire = b.flat;
    }
    if (n == 1) continue;  // the sum over one rank is the bucket itself: no collective
    if (first_launch_ < 0) first_launch_ = steady_seconds();
    b.work = comm_.start_sum(b.wire, b.what);
  }
}

void DataParallel::finish_backward() {
  if (!sync_) return;
  c10::NoGradGuard no_grad;
  std::lock_guard<std::mutex> lock(mutex_);
  const double backward_end = steady_seconds();
  for (size_t i = 0; i < params_.size(); ++i) {
    if (ready_[i]) continue;
    auto& p = params_[i];
    SCULPT_CHECK(opt_.find_unused_parameters || !p.requires_grad(), "DDP: parameter '", names_[i],
                 "' got no gradient in this backward pass; if the model or a pass leaves it out "
                 "of some steps, set distributed.find_unused_parameters=true");
    if (identity_) continue;
    if (!p.requires_grad()) {
      // Frozen: its gradient stays as it was, apart from the bucket that is reduced.
      if (grad_in_bucket(i)) p.mutable_grad() = p.grad().clone();
    } else if (p.grad().defined()) {
      into_bucket(i);  // earlier micro-batches' gradient: this rank's share of the sum
    } else {
      slots_[i].view.zero_();
      divided_[i] = 1;  // zero over the world size
    }
    --buckets_[slots_[i].bucket].pending;
  }
  launch_ready();
  double last_done = backward_end;
  for (auto& b : buckets_) {
    if (b.work) {
      b.work->wait();
      last_done = std::max(last_done, b.work->completed_at());
    }
    if (b.wire.defined() && b.wire.data_ptr() != b.flat.data_ptr()) b.flat.copy_(b.wire);
  }
  if (first_launch_ >= 0) {
    ++stats_.reductions;
    stats_.comm_s += last_done - first_launch_;
    stats_.exposed_s += std::max(0.0, last_done - std::max(backward_end, first_launch_));
  }
  if (!identity_ && opt_.find_unused_parameters) {
    // A gradient that no rank produced stays undefined; one that another rank produced is the
    // reduced bucket.
    std::vector<float> used(params_.size(), 0.0f);
    for (size_t i = 0; i < params_.size(); ++i)
      used[i] = params_[i].requires_grad() && (ready_[i] || params_[i].grad().defined());
    auto flags = at::tensor(used);
    if (comm_.distributed()) comm_.all_reduce(flags, ReduceOp::max, "the DDP used-parameter flags");
    const float* any = flags.data_ptr<float>();
    for (size_t i = 0; i < params_.size(); ++i)
      if (any[i] > 0 && !params_[i].grad().defined()) params_[i].mutable_grad() = slots_[i].view;
  }
  reset();
  sync_ = false;  // backward passes outside a step (a pass's own gradients) stay local
}

}  // namespace sculpt::distributed
