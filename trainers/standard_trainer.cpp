// The standard supervised loop: the step loop (train_loop.h) once over the run's data, then the
// passes' finalize, the final evaluation and the run's outputs. How a step runs (one process,
// DDP, or a pipeline stage) is the StepStrategy chosen here, once.
#include "core/logging/logging.h"
#include "core/optim/schedules.h"
#include "trainers/run_parts.h"
#include "trainers/strategies/step_strategy.h"
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
    const bool bf16 = use_bf16(cfg_.precision, ctx.device());
    auto strategy = make_step_strategy(ctx, bf16);
    auto parts = build_run_parts(c, strategy->build_device());
    auto& split = parts.split;
    auto& task = *parts.task;
    at::Tensor sample = split.train.input_rows(attach_sample_rows(split.train));
    auto model = strategy->take_model(std::move(parts.model), task, sample);

    // What every hook may read; batch, outputs and loss are set inside the step. Passes attach
    // before the optimizer exists, so parameters they add are trained; they know the schedule.
    StepContext hook = make_hook(ctx, split.train, parts.task);
    strategy->set_world(hook);
    const int64_t total = total_steps(cfg_, c.data, strategy->rows_per_process(split.train.size()),
                                      "data", &hook.steps_per_epoch);
    hook.total_steps = total;
    attach_callbacks(callbacks, *model, hook, split.train, sample);
    strategy->check_callbacks(callbacks);
    auto optimizer = build_optimizer(c, *model, callbacks);
    hook.optimizer = optimizer.get();
    auto schedule = schedule_registry().create(c.scheduler.name, c.scheduler);
    log::info("model ", c.model.name, ": ", model->parameter_count(), " parameters, ",
              model->parameter_bytes(), " bytes; data ", c.data.name, ": ", split.train.size(),
              " train / ", split.val.size(), " val; ", total, " steps on ", ctx.device().str(),
              bf16 ? " (bf16 autocast)" : "");

    // Resume: pass state, weights, optimizer, RNG and the position in the data.
    TrainState st;
    st.config_hash = c.hash();
    CheckpointStore store(strategy->checkpoint_dir(), cfg_.keep_checkpoints);
    const auto resume = strategy->resume_point();
    if (resume) {
      st = resume_from(*resume, c, *model, *optimizer, callbacks);
      log::info("resumed from ", resume->string(), " at step ", st.step);
      resume_at_world_size(st, strategy->processes_sharing_data(), c.data.batch_size,
                           hook.steps_per_epoch, cfg_.grad_accumulation, cfg_.max_steps > 0);
    }
    // A resumed run appends to its metrics; a fresh one starts them anew.
    MetricsLog metrics(ctx.dir(), resume, cfg_.tensorboard, t0, ctx.writes_files());
    LoopParts lp{ctx,       cfg_,     *model,     task,      split.train, split.val,
                 c.data,    *optimizer, *schedule, store,     callbacks,   hook,
                 metrics,   *strategy};
    lp.loader_seed = static_cast<uint64_t>(c.run.seed);
    lp.end_step = total;
    if (resume) lp.resumed_from = *resume;
    TrainLoop loop(std::move(lp));
    const LoopResult run = loop.run(st);
    if (run.interrupted) return interrupted_at(st.step, t0);

    hook.step = st.step;
    hook.epoch = st.epoch;
    for (const auto& cb : callbacks) cb->finalize(*model, hook);
    if (c.distributed.verify_state) verify_ranks_agree(*hook.collectives, *model, callbacks);
    bool improved = false;
    FitResult result;
    result.steps = st.step;
    loop.mark_final_metrics();
    result.final_metrics["val"] = loop.eval_and_track(st, improved);
    if (!improved) loop.save(st, false);  // the final state is always the latest checkpoint
    if (parts.test) result.final_metrics["test"] = strategy->evaluate(*parts.test);
    if (cfg_.final_train_eval) result.final_metrics["train"] = strategy->evaluate(split.train);
    result.time_s = seconds_since(t0);
    strategy->write_outputs(run_summary(ctx, *model, result, run, callbacks), callbacks);
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
