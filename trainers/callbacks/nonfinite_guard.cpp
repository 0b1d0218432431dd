// trainer.nonfinite: a step whose loss is NaN/Inf on any rank aborts the run with a hint, or
// (skip) leaves the weights and the passes' state as they were; skipped steps are counted.
#include <stdexcept>

#include "core/logging/logging.h"
#include "trainers/callbacks/builtin.h"

namespace sculpt::trainers {

namespace {
class NonfiniteGuard final : public LoopCallback {
 public:
  std::string name() const override { return "nonfinite_guard"; }
  void on_backward_end(TrainLoop& loop, StepResult& s) override {
    if (s.nonfinite.empty()) return;
    if (loop.parts().cfg.nonfinite == config::NonfiniteAction::abort)
      throw std::runtime_error("training diverged: " + s.nonfinite +
                               "; lower optimizer.lr, set trainer.grad_clip_norm, or "
                               "trainer.nonfinite=skip");
    log::warn("skipping step: ", s.nonfinite);
    ++loop.result().skipped_steps;
    s.skipped = true;
  }
};
}  // namespace

std::unique_ptr<LoopCallback> make_nonfinite_guard() { return std::make_unique<NonfiniteGuard>(); }

}  // namespace sculpt::trainers
