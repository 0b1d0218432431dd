// The local step strategy: the whole model on this process; with several ranks (DDP) every rank
// reads its shard of the batches and gradients are averaged over the ranks during the last
// micro-batch's backward (no_sync before it).
#include <torch/torch.h>

#include "core/data/loader.h"
#include "core/error.h"
#include "distributed/ddp.h"
#include "trainers/run_parts.h"
#include "trainers/strategies/step_strategy.h"
#include "trainers/train_loop.h"

namespace sculpt::trainers {

std::unique_ptr<distributed::DataParallel> make_data_parallel(
    const config::DistributedConfig& dc, Collectives& comm, models::Model& model,
    torch::optim::Optimizer& optimizer) {
  std::map<const void*, std::string> names;
  for (const auto& p : model.named_parameters()) names[p.value().unsafeGetTensorImpl()] = p.key();
  std::vector<at::Tensor> params;
  std::vector<std::string> param_names;
  for (auto& group : optimizer.param_groups())
    for (auto& p : group.params()) {
      auto it = names.find(p.unsafeGetTensorImpl());
      params.push_back(p);
      param_names.push_back(it != names.end() ? it->second
                                              : "pass parameter " + std::to_string(params.size()));
    }
  return std::make_unique<distributed::DataParallel>(params, param_names, model.buffers(), comm,
                                                     distributed::DdpOptions::from(dc));
}

void StepStrategy::forward_backward_again(StepContext& /*hook*/, const Callbacks& /*callbacks*/,
                                          const TrainState& /*st*/, StepResult& /*s*/) {
  SCULPT_ASSERT(false, "this step strategy cannot run a step again (optimizer.sam_rho)");
}

namespace {

class LocalStep final : public StepStrategy {
 public:
  LocalStep(RunContext& ctx, bool bf16) : ctx_(ctx), bf16_(bf16) {}

  c10::Device build_device() const override { return ctx_.device(); }
  std::unique_ptr<models::Model> take_model(std::unique_ptr<models::Model> whole,
                                            tasks::Task& task, at::Tensor& /*sample*/) override {
    task_ = &task;
    model_ = whole.get();
    return whole;
  }
  void set_world(StepContext& /*hook*/) const override {}  // make_hook's: the run's ranks
  int64_t rows_per_process(int64_t rows) const override { return rows_per_rank(ctx_, rows); }
  int processes_sharing_data() const override { return ctx_.world_size(); }
  void check_callbacks(const Callbacks& /*callbacks*/) const override {}
  std::filesystem::path checkpoint_dir() const override { return ctx_.dir(); }
  std::optional<std::filesystem::path> resume_point() override {
    return resolve_resume(ctx_.config().run.resume, ctx_.dir());
  }

  void begin(data::LoaderOptions& loader, torch::optim::Optimizer& optimizer) override {
    auto& comm = ctx_.collectives();
    loader.rank = comm.rank();
    loader.world_size = comm.world_size();
    ddp_.reset();
    if (ctx_.data_parallel())
      ddp_ = make_data_parallel(ctx_.config().distributed, comm, *model_, optimizer);
  }

  void forward_backward(data::Loader& loader, StepContext& hook, const Callbacks& callbacks,
                        TrainState& st, StepResult& s) override {
    const int64_t k = ctx_.config().trainer.grad_accumulation;
    const auto device = ctx_.device();
    if (ddp_) ddp_->broadcast_buffers();
    kept_.clear();
    data::Batch b;
    while (s.micro < k && loader.next(b)) {
      // DDP reduces in the step's last micro-batch only (no_sync before it).
      const bool sync = s.micro + 1 == k || loader.remaining() == 0;
      if (ddp_) ddp_->begin_backward(sync);
      b.inputs = b.inputs.to(device);
      b.targets = b.targets.to(device);
      hook.batch = &b;
      for (const auto& cb : callbacks) cb->on_batch(b, hook);
      if (keep_batches_) kept_.push_back(b);
      micro_backward(b, sync, hook, callbacks, st, s, "");
      ++st.batch_in_epoch;
    }
  }

  void forward_backward_again(StepContext& hook, const Callbacks& callbacks, const TrainState& st,
                              StepResult& s) override {
    SCULPT_ASSERT(keep_batches_, "a step run again without optimizer.sam_rho");
    for (size_t i = 0; i < kept_.size(); ++i) {
      const bool sync = i + 1 == kept_.size();
      if (ddp_) ddp_->begin_backward(sync);
      micro_backward(kept_[i], sync, hook, callbacks, st, s, " at the SAM-perturbed weights");
    }
    kept_.clear();
  }

  void clip_grad_norm(double max_norm) override {
    torch::nn::utils::clip_grad_norm_(model_->parameters(), max_norm);
  }

  std::map<std::string, double> evaluate(const data::Dataset& ds) override {
    // Under DDP each rank evaluates its shard; the sums are added over the ranks.
    return trainers::evaluate(*model_, eval_task_ ? *eval_task_ : *task_, ds,
                              ctx_.config().data, ctx_.device(), bf16_, map_outputs_,
                              ctx_.data_parallel() ? &ctx_.collectives() : nullptr);
  }
  bool writes_checkpoints() const override { return ctx_.writes_files(); }
  void set_output_map(OutputMap map) override { map_outputs_ = std::move(map); }
  void set_eval_task(const tasks::Task* task) override { eval_task_ = task; }

  void write_outputs(nlohmann::json summary, const Callbacks& /*callbacks*/) override {
    write_run_outputs(ctx_, *model_, summary);
  }

 private:
  // One micro-batch (after the passes' on_batch): forward, task loss + the passes' extra_loss,
  // backward of loss / k; the loss and the samples go into `s`. `where` ends a non-finite
  // loss's message.
  void micro_backward(data::Batch& b, bool sync, StepContext& hook, const Callbacks& callbacks,
                      const TrainState& st, StepResult& s, const char* where) {
    const int64_t k = ctx_.config().trainer.grad_accumulation;
    const auto device = ctx_.device();
    hook.batch = &b;
    const auto& inputs = b.inputs;
    at::Tensor out;
    {
      Autocast autocast(device, bf16_);
      out = model_->forward(inputs);
    }
    out = out.to(at::kFloat);  // the loss in fp32 whatever the forward ran in
    if (map_outputs_) out = map_outputs_(out);
    auto loss = task_->loss(out, b.targets);
    hook.outputs = &out;
    hook.loss = &loss;
    loss = add_extra_losses(loss, callbacks, *model_, hook);
    hook.outputs = hook.loss = nullptr;
    hook.batch = nullptr;
    const double loss_v = loss.item<double>();
    if (!std::isfinite(loss_v) && s.nonfinite.empty()) {
      s.nonfinite = detail::concat(
          "loss ", loss_v, where, " at step ", st.step, " (epoch ", st.epoch,
          "); non-finite values: ", (~out.isfinite()).sum().item<int64_t>(), " of ", out.numel(),
          " model outputs, ", (~inputs.isfinite()).sum().item<int64_t>(), " of ", inputs.numel(),
          " inputs");
    }
    // The outputs (a language model's logits: batch x length x vocabulary floats) are not
    // needed by backward, which keeps what it needs itself: released before it runs.
    out = at::Tensor();
    (loss / static_cast<double>(k)).backward();
    if (ddp_ && sync) ddp_->finish_backward();
    s.loss_sum += loss_v;
    s.samples += b.size();
    ++s.micro;
  }

  RunContext& ctx_;
  tasks::Task* task_ = nullptr;
  const tasks::Task* eval_task_ = nullptr;  // set_eval_task; null: task_
  bool bf16_;
  models::Model* model_ = nullptr;
  OutputMap map_outputs_;
  std::unique_ptr<distributed::DataParallel> ddp_;
  // optimizer.sam_rho > 0: the step's micro-batches, after on_batch, for forward_backward_again.
  const bool keep_batches_ = ctx_.config().optimizer.sam_rho > 0;
  std::vector<data::Batch> kept_;
};

}  // namespace

std::unique_ptr<StepStrategy> make_local_strategy(RunContext& ctx, bool bf16) {
  return std::make_unique<LocalStep>(ctx, bf16);
}

}  // namespace sculpt::trainers
