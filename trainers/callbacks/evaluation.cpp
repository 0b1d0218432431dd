// Evaluation on the validation split every trainer.eval_every steps (0: at every epoch end,
// never at the loop's last step: fit() evaluates then), a checkpoint marked best when
// trainer.best_metric improves, and early stopping after trainer.early_stopping evaluations
// without a new best (the count is in TrainState, so it survives a resume).
#include "core/logging/logging.h"
#include "trainers/callbacks/builtin.h"

namespace sculpt::trainers {

namespace {
class Evaluation final : public LoopCallback {
 public:
  std::string name() const override { return "evaluation"; }
  void on_step_end(TrainLoop& loop, const StepResult& /*s*/) override {
    const auto& p = loop.parts();
    const int64_t step = loop.state().step;
    if (p.cfg.eval_every > 0 && step % p.cfg.eval_every == 0 && step != p.end_step) evaluate(loop);
  }
  void on_epoch_end(TrainLoop& loop) override {
    if (loop.parts().cfg.eval_every == 0) evaluate(loop);
  }

 private:
  static void evaluate(TrainLoop& loop) {
    auto& st = loop.state();
    const auto& cfg = loop.parts().cfg;
    bool improved = false;
    loop.eval_and_track(st, improved);
    st.evals_since_best = improved ? 0 : st.evals_since_best + 1;
    if (cfg.early_stopping > 0 && st.evals_since_best >= cfg.early_stopping) {
      log::info("early stopping at step ", st.step, ": ", st.evals_since_best,
                " evaluations without a better val ", cfg.best_metric);
      loop.stop(false);
    }
  }
};
}  // namespace

std::unique_ptr<LoopCallback> make_evaluation() { return std::make_unique<Evaluation>(); }

}  // namespace sculpt::trainers
