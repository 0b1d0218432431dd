// The progress line (report/progress.h; drawn only on a terminal): step, loss, and the
// samples/s of the current logging window.
#include "core/report/progress.h"

#include "trainers/callbacks/builtin.h"

namespace sculpt::trainers {

namespace {
class Progress final : public LoopCallback {
 public:
  std::string name() const override { return "progress"; }
  void on_loop_begin(TrainLoop& loop) override {
    bar_ = std::make_unique<report::ProgressBar>(loop.parts().end_step, loop.state().step);
    loop.set_progress(bar_.get());
    samples_ = 0;
    t0_ = Clock::now();
  }
  void on_step_end(TrainLoop& loop, const StepResult& s) override {
    const int64_t step = loop.state().step;
    samples_ += s.samples;
    bar_->update(step, s.mean_loss(),
                 static_cast<double>(samples_) / std::max(1e-9, seconds_since(t0_)));
    if (step % loop.parts().cfg.log_every == 0 || step == loop.parts().end_step) {
      samples_ = 0;
      t0_ = Clock::now();
    }
  }
  void on_loop_end(TrainLoop& loop) override {
    loop.set_progress(nullptr);
    bar_.reset();
  }

 private:
  std::unique_ptr<report::ProgressBar> bar_;
  int64_t samples_ = 0;
  Clock::time_point t0_;
};
}  // namespace

std::unique_ptr<LoopCallback> make_progress() { return std::make_unique<Progress>(); }

}  // namespace sculpt::trainers
