// The standard supervised loop: batch -> forward -> task loss -> backward -> (clip) -> step,
// with the lr schedule applied per step, periodic logging and evaluation, metrics.jsonl and
// summary.json in the run directory.
#include "core/checkpoint/checkpoint.h"
#include "core/logging/logging.h"
#include "core/optim/schedules.h"
#include "core/error.h"
#include "core/run/collectives.h"
#include "trainers/callback_state.h"
#include "trainers/pipeline_stage.h"
#include "trainers/run_parts.h"
#include "trainers/train_loop.h"
#include "trainers/trainer.h"

namespace sculpt::trainers {

TrainerRegistry& trainer_registry() {
  static TrainerRegistry registry("trainers");
  return registry;
}

namespace {

class StandardTrainer final : public Trainer {
 public:
  explicit StandardTrainer(const config::TrainerConfig& c) : cfg_(c) {}

  FitResult fit(RunContext& ctx, const Callbacks& callbacks) override {
    const auto& c = ctx.config();
    const auto t0 = Clock::now();
    // Under a pipeline the whole model is built on the host, and this process keeps its stage.
    const bool pipe_run = pipelined(c);
    auto parts = build_run_parts(c, pipe_run ? c10::Device(c10::kCPU) : ctx.device());
    auto& split = parts.split;
    auto& model = parts.model;
    auto& task = parts.task;
    PipelineStage stage;
    at::Tensor stage_sample;  // the stage's inputs for the passes' sample rows
    if (pipe_run) {
      SCULPT_CHECK(ctx.data_parallel(), c.source_file, ": distributed.pipeline.stages is ",
                   c.distributed.pipeline.stages, ": start the run with sculpt-run (or torchrun) "
                   "--nproc-per-node ", c.distributed.pipeline.stages, ", one process per stage");
      stage_sample = split.train.input_rows(attach_sample_rows(split.train));
      model = make_stage(ctx, *model, stage_sample, stage);
    }
    TrainState st;
    // What every hook may read; batch, outputs and loss are set inside the step. Passes attach
    // before the optimizer exists, so parameters they add are trained; they know the schedule.
    StepContext hook = make_hook(ctx, split.train);
    if (pipe_run) {  // passes agree with the replicas of their stage
      hook.rank = static_cast<int>(stage.replica);
      hook.world_size = static_cast<int>(stage.replicas);
      hook.collectives = &stage.data_collectives();
    }
    int64_t steps_per_epoch = 0;
    const int64_t rows = pipe_run ? rows_per_replica(ctx, split.train.size())
                                  : rows_per_rank(ctx, split.train.size());
    const int64_t total = total_steps(cfg_, c.data, rows, "data", &steps_per_epoch);
    hook.total_steps = total;
    hook.steps_per_epoch = steps_per_epoch;
    attach_callbacks(callbacks, *model, hook, split.train, stage_sample);
    if (pipe_run) check_stage_callbacks(callbacks);
    auto optimizer = build_optimizer(c, *model, callbacks);
    hook.optimizer = optimizer.get();
    auto schedule = schedule_registry().create(c.scheduler.name, c.scheduler);
    const bool bf16 = use_bf16(cfg_.precision, ctx.device());
    log::info("model ", c.model.name, ": ", model->parameter_count(), " parameters, ",
              model->parameter_bytes(), " bytes; data ", c.data.name, ": ", split.train.size(),
              " train / ", split.val.size(), " val; ", total, " steps on ", ctx.device().str(),
              bf16 ? " (bf16 autocast)" : "");

    // Resume: weights, optimizer, RNG, pass state and the position in the data.
    st.config_hash = c.hash();
    CheckpointStore store(pipe_run ? stage_dir(ctx.dir(), stage.stage) : ctx.dir(),
                          cfg_.keep_checkpoints);
    const auto resume_from =
        pipe_run ? resolve_stage_resume(ctx, stage) : resolve_resume(c.run.resume, ctx.dir());
    if (resume_from) {
      // Pass state first: loading it may draw random numbers (a teacher's init), and the
      // checkpoint restores the generator last.
      load_callback_states(callbacks, *resume_from);
      st = CheckpointStore::load(*resume_from, *model, *optimizer);
      if (st.config_hash != c.hash())
        log::warn("resuming from a checkpoint written with another config (hash ", st.config_hash,
                  ", now ", c.hash(), ")");
      st.config_hash = c.hash();
      log::info("resumed from ", resume_from->string(), " at step ", st.step);
      resume_at_world_size(st, pipe_run ? static_cast<int>(stage.replicas) : ctx.world_size(),
                           c.data.batch_size, steps_per_epoch, cfg_.grad_accumulation,
                           cfg_.max_steps > 0);
    }
    // A resumed run appends to its metrics; a fresh one starts them anew.
    MetricsLog metrics(ctx.dir(), resume_from.has_value(), cfg_.tensorboard, t0,
                       ctx.writes_files());
    LoopParts loop_parts{ctx,       cfg_,      *model,   *task,     split.train,
                         split.val, c.data,    *optimizer, *schedule, store,
                         callbacks, hook,      metrics,  static_cast<uint64_t>(c.run.seed),
                         0,         total,     bf16};
    if (pipe_run) loop_parts.pipeline = &stage;
    TrainLoop loop(std::move(loop_parts));
    const LoopResult run = loop.run(st);
    if (run.interrupted) return interrupted_at(st.step, t0);
    const int64_t step = st.step;
    hook.step = step;
    hook.epoch = st.epoch;
    for (const auto& cb : callbacks) cb->finalize(*model, hook);
    if (c.distributed.verify_state)
      verify_ranks_agree(pipe_run ? stage.data_collectives() : ctx.collectives(), *model,
                         callbacks);
    bool improved = false;
    auto final_val = loop.eval_and_track(st, improved);
    if (!improved) loop.save(st, false);  // the final state is always the latest checkpoint

    FitResult result;
    result.steps = step;
    result.final_metrics["val"] = final_val;
    const auto eval_on = [&](const data::Dataset& ds) {
      return pipe_run ? pipeline_evaluate(stage, *model, *task, ds, c.data, ctx.device(), bf16)
                      : evaluate(*model, *task, ds, c.data, ctx.device(), bf16, {},
                                 ctx.data_parallel() ? &ctx.collectives() : nullptr);
    };
    if (parts.test) result.final_metrics["test"] = eval_on(*parts.test);
    if (cfg_.final_train_eval) result.final_metrics["train"] = eval_on(split.train);
    result.time_s = seconds_since(t0);
    auto summary = run_summary(ctx, *model, result, run, callbacks);
    if (!pipe_run) {
      write_run_outputs(ctx, *model, summary);
      return result;
    }
    // The whole model's size, the passes of every stage, and one weights file.
    auto size = at::tensor({static_cast<double>(model->parameter_count()),
                            static_cast<double>(model->parameter_bytes())},
                           at::kDouble);
    stage.pipe->all_reduce(size, ReduceOp::sum, "the stages' model sizes");
    summary["model"] = {{"params", static_cast<int64_t>(size[0].item<double>())},
                        {"bytes", static_cast<int64_t>(size[1].item<double>())}};
    const auto passes = gather_summaries(stage, callbacks);
    if (!callbacks.empty()) summary["compression"] = passes;
    const auto& pc = c.distributed.pipeline;
    summary["pipeline"] = {{"stages", pc.stages},        {"replicas", stage.replicas},
                           {"schedule", pc.schedule},    {"microbatches", pc.microbatches},
                           {"theoretical_bubble",
                            static_cast<double>(pc.stages - 1) /
                                static_cast<double>(pc.microbatches + pc.stages - 1)},
                           {"per_stage", stage_report(stage, *model)}};
    write_run_outputs(ctx, gather_model(stage, *model), summary);
    return result;
  }

 private:
  config::TrainerConfig cfg_;
};

}  // namespace

void register_builtin_trainers(TrainerRegistry& r) {
  r.add("standard", "supervised loop: epochs/max_steps, lr schedule, clipping, eval, metrics.jsonl",
        [](const config::TrainerConfig& c) { return std::make_unique<StandardTrainer>(c); });
  add_incremental_trainer(r);
}

}  // namespace sculpt::trainers
