// The training curve: every trainer.log_every steps (and at the loop's last step) one "train"
// record in metrics.jsonl (and TensorBoard) with the mean loss of the window's updated steps,
// the lr, samples/s and the skipped steps; under DDP the mean over every rank's steps.
#include <cmath>

#include "core/logging/logging.h"
#include "core/report/progress.h"
#include "core/run/collectives.h"
#include "trainers/callbacks/builtin.h"

namespace sculpt::trainers {

namespace {
class MetricsLogger final : public LoopCallback {
 public:
  std::string name() const override { return "metrics_logger"; }
  void on_loop_begin(TrainLoop& loop) override {
    reset();
    distributed_ = loop.parts().ctx.collectives().distributed();
  }
  // The window's losses so far: a resumed run's next record then averages the same steps as
  // the uninterrupted run's. (Under DDP each rank's window differs and only rank 0 writes
  // checkpoints: the window restarts there.)
  nlohmann::json state() const override {
    if (distributed_) return nullptr;
    return {{"loss_sum", loss_}, {"steps", steps_}};
  }
  void load_state(const nlohmann::json& s) override {
    loss_ = s.value("loss_sum", 0.0);
    steps_ = s.value("steps", int64_t{0});
  }

  void on_step_end(TrainLoop& loop, const StepResult& s) override {
    if (!s.skipped) {
      loss_ += s.mean_loss();
      ++steps_;
    }
    samples_ += s.samples;
    const auto& p = loop.parts();
    const auto& st = loop.state();
    if (st.step % p.cfg.log_every != 0 && st.step != p.end_step) return;
    auto& comm = p.ctx.collectives();
    if (comm.distributed()) {  // the mean over the ranks, the samples of all
      auto w = at::tensor(
          {loss_, static_cast<double>(steps_), static_cast<double>(samples_)}, at::kDouble);
      comm.all_reduce(w, ReduceOp::sum, "the training metrics");
      loss_ = w[0].item<double>();
      steps_ = static_cast<int64_t>(w[1].item<double>());
      samples_ = static_cast<int64_t>(w[2].item<double>());
    }
    const double rate = static_cast<double>(samples_) / std::max(1e-9, seconds_since(t0_));
    const double mean_loss = steps_ ? loss_ / static_cast<double>(steps_) : NAN;
    nlohmann::json j = {{"step", st.step},
                        {"epoch", st.epoch},
                        {"split", "train"},
                        {"loss", mean_loss},
                        {"lr", loop.lr()},
                        {"samples_per_s", rate},
                        {"skipped_steps", loop.result().skipped_steps}};
    j.update(p.record_extra);
    p.metrics.record(j);
    if (!loop.progress() || !loop.progress()->active())
      log::info("step ", st.step, "/", p.end_step, " epoch ", st.epoch, " loss ", mean_loss,
                " lr ", loop.lr(), " ", static_cast<int64_t>(rate), " samples/s");
    reset();
  }

 private:
  void reset() {
    loss_ = 0;
    steps_ = samples_ = 0;
    t0_ = Clock::now();
  }
  bool distributed_ = false;
  double loss_ = 0;  // sum of the window's per-step mean losses
  int64_t steps_ = 0, samples_ = 0;
  Clock::time_point t0_;
};
}  // namespace

std::unique_ptr<LoopCallback> make_metrics_logger() { return std::make_unique<MetricsLogger>(); }

}  // namespace sculpt::trainers
