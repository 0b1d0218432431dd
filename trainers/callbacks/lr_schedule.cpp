// The one place the learning rate changes: before every step, optimizer.lr times the
// schedule's factor at the step (counted from the loop's first step, warm-up first).
#include "core/optim/schedules.h"
#include "trainers/callbacks/builtin.h"

namespace sculpt::trainers {

namespace {
class LrScheduleCallback final : public LoopCallback {
 public:
  std::string name() const override { return "lr_schedule"; }
  void on_step_begin(TrainLoop& loop) override {
    const auto& p = loop.parts();
    const auto& c = p.ctx.config();
    const int64_t total = p.end_step - p.begin_step;
    loop.set_lr(c.optimizer.lr * lr_factor(p.schedule, c.scheduler.warmup_steps,
                                           loop.state().step - p.begin_step, total));
  }
};
}  // namespace

std::unique_ptr<LoopCallback> make_lr_schedule() { return std::make_unique<LrScheduleCallback>(); }

LoopCallbacks builtin_loop_callbacks() {
  LoopCallbacks all;
  all.push_back(make_lr_schedule());
  all.push_back(make_nonfinite_guard());
  all.push_back(make_progress());
  all.push_back(make_metrics_logger());
  all.push_back(make_evaluation());
  all.push_back(make_checkpointing());
  all.push_back(make_stop_on_signal());
  return all;
}

}  // namespace sculpt::trainers
