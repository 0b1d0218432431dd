// Periodic checkpoints: every trainer.checkpoint_every steps, or at every epoch end when it
// is 0 (CheckpointStore keeps the newest trainer.keep_checkpoints plus the best). fit() writes
// the final one.
#include "trainers/callbacks/builtin.h"

namespace sculpt::trainers {

namespace {
class Checkpointing final : public LoopCallback {
 public:
  std::string name() const override { return "checkpointing"; }
  void on_step_end(TrainLoop& loop, const StepResult& /*s*/) override {
    const int64_t every = loop.parts().cfg.checkpoint_every;
    if (every > 0 && loop.state().step % every == 0) loop.save(loop.state(), false);
  }
  void on_epoch_end(TrainLoop& loop) override {
    if (loop.parts().cfg.checkpoint_every == 0) loop.save(loop.state(), false);
  }
};
}  // namespace

std::unique_ptr<LoopCallback> make_checkpointing() { return std::make_unique<Checkpointing>(); }

}  // namespace sculpt::trainers
