// SIGINT/SIGTERM: the step being made finishes (every rank agrees on the flag, see
// TrainLoop::agree_on_flags), a checkpoint is written, and the loop ends; `run.resume=auto`
// continues exactly there.
#include "core/logging/logging.h"
#include "core/run/interrupt.h"
#include "trainers/callbacks/builtin.h"

namespace sculpt::trainers {

namespace {
class StopOnSignal final : public LoopCallback {
 public:
  std::string name() const override { return "stop_on_signal"; }
  void on_loop_begin(TrainLoop& /*loop*/) override { install_stop_handlers(); }
  void on_step_end(TrainLoop& loop, const StepResult& s) override {
    if (!s.stop_requested) return;
    const auto where = loop.save(loop.state(), false);
    log::info("stopped at step ", loop.state().step,
              where.empty() ? "; rank 0 writes the checkpoint" : "; checkpoint ", where.string(),
              "; continue with: sculpt train <config> run.resume=auto");
    loop.stop(true);
  }
};
}  // namespace

std::unique_ptr<LoopCallback> make_stop_on_signal() { return std::make_unique<StopOnSignal>(); }

}  // namespace sculpt::trainers
