// The standard supervised loop: batch -> forward -> task loss -> backward -> (clip) -> step,
// with the lr schedule applied per step, periodic logging and evaluation, metrics.jsonl and
// summary.json in the run directory.
#include "core/checkpoint/checkpoint.h"
#include "core/logging/logging.h"
#include "core/optim/schedules.h"
#include "trainers/callback_state.h"
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
    auto parts = build_run_parts(c, ctx.device());
    auto& split = parts.split;
    auto& model = parts.model;
    auto& task = parts.task;
    TrainState st;
    // What every hook may read; batch, outputs and loss are set inside the step. Passes attach
    // before the optimizer exists, so parameters they add are trained; they know the schedule.
    StepContext hook = make_hook(ctx, split.train);
    int64_t steps_per_epoch = 0;
    const int64_t total = total_steps(cfg_, c.data, rows_per_rank(ctx, split.train.size()), "data",
                                    &steps_per_epoch);
    hook.total_steps = total;
    hook.steps_per_epoch = steps_per_epoch;
    attach_callbacks(callbacks, *model, hook, split.train);
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
    CheckpointStore store(ctx.dir(), cfg_.keep_checkpoints);
    const auto resume_from = resolve_resume(c.run.resume, ctx.dir());
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
      resume_at_world_size(st, ctx.world_size(), c.data.batch_size, steps_per_epoch,
                           cfg_.grad_accumulation, cfg_.max_steps > 0);
    }
    // A resumed run appends to its metrics; a fresh one starts them anew.
    MetricsLog metrics(ctx.dir(), resume_from.has_value(), cfg_.tensorboard, t0,
                       ctx.writes_files());
    TrainLoop loop(LoopParts{ctx, cfg_, *model, *task, split.train, split.val, c.data, *optimizer,
                             *schedule, store, callbacks, hook, metrics,
                             static_cast<uint64_t>(c.run.seed), 0, total, bf16});
    const LoopResult run = loop.run(st);
    if (run.interrupted) return interrupted_at(st.step, t0);
    const int64_t step = st.step;
    hook.step = step;
    hook.epoch = st.epoch;
    for (const auto& cb : callbacks) cb->finalize(*model, hook);
    if (c.distributed.verify_state) verify_ranks_agree(ctx.collectives(), *model, callbacks);
    bool improved = false;
    auto final_val = loop.eval_and_track(st, improved);
    if (!improved) loop.save(st, false);  // the final state is always the latest checkpoint

    FitResult result;
    result.steps = step;
    result.final_metrics["val"] = final_val;
    if (parts.test)
      result.final_metrics["test"] =
          evaluate(*model, *task, *parts.test, c.data, ctx.device(), bf16);
    if (cfg_.final_train_eval)
      result.final_metrics["train"] =
          evaluate(*model, *task, split.train, c.data, ctx.device(), bf16);
    result.time_s = seconds_since(t0);
    auto summary = run_summary(ctx, *model, result, run, callbacks);
    write_run_outputs(ctx, *model, summary);
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
