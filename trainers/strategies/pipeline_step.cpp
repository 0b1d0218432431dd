// The pipeline step strategy (distributed.pipeline, docs/pipeline.md): this process holds one
// stage of a model replica; every stage of a replica reads the replica's batches (the first
// stage uses the inputs, the last the targets), micro-batches flow through the stages under
// GPipe or 1F1B (pipeline_stage.h), and DDP reduces within each stage's replicas.
#include <torch/torch.h>

#include "core/data/loader.h"
#include "core/error.h"
#include "distributed/ddp.h"
#include "trainers/pipeline_stage.h"
#include "trainers/strategies/step_strategy.h"
#include "trainers/train_loop.h"

namespace sculpt::trainers {

namespace {

class PipelineStep final : public StepStrategy {
 public:
  PipelineStep(RunContext& ctx, bool bf16) : ctx_(ctx), bf16_(bf16) {
    const auto& c = ctx.config();
    SCULPT_CHECK(ctx.data_parallel(), c.source_file, ": distributed.pipeline.stages is ",
                 c.distributed.pipeline.stages, ": start the run with sculpt-run (or torchrun) "
                 "--nproc-per-node ", c.distributed.pipeline.stages, ", one process per stage");
  }

  c10::Device build_device() const override { return c10::Device(c10::kCPU); }
  std::unique_ptr<models::Model> take_model(std::unique_ptr<models::Model> whole,
                                            tasks::Task& task, at::Tensor& sample) override {
    task_ = &task;
    auto mine = make_stage(ctx_, *whole, sample, stage_);
    model_ = mine.get();
    return mine;
  }
  void set_world(StepContext& hook) const override {  // passes agree with their stage's replicas
    hook.rank = static_cast<int>(stage_.replica);
    hook.world_size = static_cast<int>(stage_.replicas);
    hook.collectives = &stage_.data_collectives();
  }
  int64_t rows_per_process(int64_t rows) const override { return rows_per_replica(ctx_, rows); }
  int processes_sharing_data() const override { return static_cast<int>(stage_.replicas); }
  void check_callbacks(const Callbacks& callbacks) const override {
    check_stage_callbacks(callbacks);
  }
  std::filesystem::path checkpoint_dir() const override {
    return stage_dir(ctx_.dir(), stage_.stage);
  }
  std::optional<std::filesystem::path> resume_point() override {
    return resolve_stage_resume(ctx_, stage_);
  }

  void begin(data::LoaderOptions& loader, torch::optim::Optimizer& optimizer) override {
    loader.rank = static_cast<int>(stage_.replica);
    loader.world_size = static_cast<int>(stage_.replicas);
    ddp_.reset();
    if (stage_.data)
      ddp_ = make_data_parallel(ctx_.config().distributed, *stage_.data, *model_, optimizer);
  }

  void forward_backward(data::Loader& loader, StepContext& hook, const Callbacks& callbacks,
                        TrainState& st, StepResult& s) override {
    if (ddp_) ddp_->broadcast_buffers();
    data::Batch b;
    if (!loader.next(b)) return;
    // One batch in micro-batches through the stages; the passes' own terms (weight penalties)
    // join each stage's final backward.
    hook.batch = &b;
    for (const auto& cb : callbacks) cb->on_batch(b, hook);
    const auto extra = [&] { return add_extra_losses({}, callbacks, *model_, hook); };
    const auto r = pipeline_step(stage_, *model_, *task_, b, ctx_.device(), bf16_, ddp_.get(), extra);
    hook.batch = nullptr;
    // Every stage logs the replica's loss: the last stage's plus every stage's extra term.
    auto shared = at::tensor({r.loss, r.extra_loss}, at::kDouble);
    stage_.pipe->all_reduce(shared, ReduceOp::sum, "the step's loss");
    s.loss_sum = shared[0].item<double>() + shared[1].item<double>();
    if (!std::isfinite(s.loss_sum))
      s.nonfinite = detail::concat("loss ", s.loss_sum, " at step ", st.step, " (epoch ", st.epoch, ")");
    s.samples = stage_.first() ? b.size() : 0;
    s.micro = 1;
    ++st.batch_in_epoch;
  }

  void clip_grad_norm(double max_norm) override {
    trainers::clip_grad_norm(stage_, *model_, max_norm);  // the norm over every stage
  }
  std::map<std::string, double> evaluate(const data::Dataset& ds) override {
    return pipeline_evaluate(stage_, *model_, *task_, ds, ctx_.config().data, ctx_.device(), bf16_);
  }
  bool writes_checkpoints() const override { return stage_.writes_checkpoints(); }
  void set_output_map(OutputMap map) override {
    SCULPT_CHECK(!map, "output maps (task-incremental masks) are not supported under a pipeline");
  }

  void write_outputs(nlohmann::json summary, const Callbacks& callbacks) override {
    // The whole model's size, the passes of every stage, and one weights file.
    auto size = at::tensor({static_cast<double>(model_->parameter_count()),
                            static_cast<double>(model_->parameter_bytes())},
                           at::kDouble);
    stage_.pipe->all_reduce(size, ReduceOp::sum, "the stages' model sizes");
    summary["model"] = {{"params", static_cast<int64_t>(size[0].item<double>())},
                        {"bytes", static_cast<int64_t>(size[1].item<double>())}};
    const auto passes = gather_summaries(stage_, callbacks);
    if (!callbacks.empty()) summary["compression"] = passes;
    const auto& pc = ctx_.config().distributed.pipeline;
    summary["pipeline"] = {{"stages", pc.stages},        {"replicas", stage_.replicas},
                           {"schedule", config::spelling(config::kPipelineSchedules, pc.schedule)},    {"microbatches", pc.microbatches},
                           {"theoretical_bubble",
                            static_cast<double>(pc.stages - 1) /
                                static_cast<double>(pc.microbatches + pc.stages - 1)},
                           {"per_stage", stage_report(stage_, *model_)}};
    write_run_outputs(ctx_, gather_model(stage_, *model_), summary);
  }

 private:
  RunContext& ctx_;
  tasks::Task* task_ = nullptr;
  bool bf16_;
  PipelineStage stage_;
  models::Model* model_ = nullptr;
  std::unique_ptr<distributed::DataParallel> ddp_;
};

}  // namespace

std::unique_ptr<StepStrategy> make_step_strategy(RunContext& ctx, bool bf16) {
  if (pipelined(ctx.config())) return std::make_unique<PipelineStep>(ctx, bf16);
  return make_local_strategy(ctx, bf16);
}

}  // namespace sculpt::trainers
