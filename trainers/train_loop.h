// The step loop every trainer runs (docs/architecture.md, "One step"). It is only a loop: the
// step itself (forwards and backwards of one optimizer step) belongs to a StepStrategy (local,
// DDP or pipeline, chosen once in fit()), and everything around it — the LR, logging,
// evaluation, checkpoints, SIGINT, non-finite losses — to the built-in loop callbacks of
// trainers/callbacks/, called in a fixed order around the recipe's passes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/checkpoint/checkpoint.h"
#include "trainers/callback.h"
#include "trainers/fit_pieces.h"

namespace sculpt {
class LrSchedule;
namespace report {
class ProgressBar;
}
namespace data {
class Loader;
}
}  // namespace sculpt

namespace sculpt::trainers {

class StepStrategy;
class TrainLoop;

// What one optimizer step's forwards and backwards did.
struct StepResult {
  int64_t micro = 0;     // micro-batches read; 0: the epoch's data is exhausted
  int64_t samples = 0;   // samples this process read
  double loss_sum = 0;   // the micro-batches' losses (task + passes' terms), summed
  std::string nonfinite;  // why the loss is not finite (any rank); empty: it is
  bool stop_requested = false;  // SIGINT/SIGTERM seen (any rank)
  bool skipped = false;  // the non-finite guard skipped the update
  double mean_loss() const { return loss_sum / static_cast<double>(micro); }
};

// A built-in callback of the loop (trainers/callbacks/). Unlike a recipe's pass it sees the
// loop itself: its state, its result, and its services (evaluate, save, stop).
class LoopCallback {
 public:
  virtual ~LoopCallback() = default;
  // A short name, the key of its state in a checkpoint's loop.json.
  virtual std::string name() const = 0;
  // What it must carry over a resume so that the run logs what an uninterrupted run logs
  // (written into every checkpoint's loop.json); null: nothing.
  virtual nlohmann::json state() const { return nullptr; }
  // After on_loop_begin of the first loop after a resume, with what state() wrote.
  virtual void load_state(const nlohmann::json& /*state*/) {}
  virtual void on_loop_begin(TrainLoop& /*loop*/) {}
  // Before the step's forwards (ctx.step: steps done).
  virtual void on_step_begin(TrainLoop& /*loop*/) {}
  // After the step's backwards, once the ranks agree on the flags; before the passes'
  // after_backward and the update. May mark the step skipped, or throw.
  virtual void on_backward_end(TrainLoop& /*loop*/, StepResult& /*step*/) {}
  // After the update and the passes' after_step (state().step counts the step).
  virtual void on_step_end(TrainLoop& /*loop*/, const StepResult& /*step*/) {}
  // After an epoch's last batch, unless the run ends with it (state().epoch is the next one).
  virtual void on_epoch_end(TrainLoop& /*loop*/) {}
  // When run() returns (not after an exception).
  virtual void on_loop_end(TrainLoop& /*loop*/) {}
};
using LoopCallbacks = std::vector<std::unique_ptr<LoopCallback>>;

// What one run of the step loop works with. References must outlive the loop.
struct LoopParts {
  RunContext& ctx;
  const config::TrainerConfig& cfg;
  models::Model& model;
  tasks::Task& task;
  const data::Dataset& train;
  const data::Dataset& val;
  const config::DataConfig& data;  // loader keys (batch size, normalization, augmentation)
  torch::optim::Optimizer& optimizer;
  const LrSchedule& schedule;
  CheckpointStore& store;
  const Callbacks& callbacks;  // the recipe's passes
  StepContext& hook;
  MetricsLog& metrics;
  StepStrategy& strategy;
  uint64_t loader_seed = 0;
  int64_t begin_step = 0;  // the lr schedule starts here (an increment's first global step)
  int64_t end_step = 0;    // the loop stops at this global step
  // Writes more files into every checkpoint folder (beside the callbacks' state).
  std::function<void(const std::filesystem::path&)> save_extra;
  // Extra keys of every metrics record (e.g. the increment).
  nlohmann::json record_extra = nlohmann::json::object();
  // The checkpoint this loop continues from (its loop.json restores the loop callbacks' state);
  // empty: a fresh start.
  std::filesystem::path resumed_from;
};

class TrainLoop {
 public:
  explicit TrainLoop(LoopParts parts);
  ~TrainLoop();
  // Runs steps from st.step to end_step (st.epoch / st.batch_in_epoch say where in the data).
  LoopResult run(TrainState& st);
  // Evaluates on the validation split and records it; empty when there is none.
  std::map<std::string, double> eval_and_record(const TrainState& st);
  // Evaluates and, when trainer.best_metric improved, saves a checkpoint marked best.
  std::map<std::string, double> eval_and_track(TrainState& st, bool& improved);
  std::filesystem::path save(const TrainState& st, bool is_best);
  // From now on, checkpoints record metrics.jsonl's current length instead of its length when
  // they are written: a trainer calls it before its final evaluation, so that a run killed
  // after its final checkpoint and resumed records that evaluation once, not twice.
  void mark_final_metrics() { metrics_mark_ = p_.metrics.bytes(); }

  // What the loop callbacks read and steer while run() is active.
  const LoopParts& parts() const { return p_; }
  TrainState& state() { return *state_; }
  LoopResult& result() { return result_; }
  report::ProgressBar* progress() { return progress_; }
  void set_progress(report::ProgressBar* bar) { progress_ = bar; }
  double lr() const { return lr_; }
  void set_lr(double lr);
  // Ends the loop after this step (early stopping, or a signal when `interrupted`).
  void stop(bool interrupted);

 private:
  bool one_step(data::Loader& loader);  // false when the epoch's data is exhausted
  void to_mean_gradient(int64_t micro);
  void sharpness_aware_gradient(StepResult& s);
  void agree_on_flags(StepResult& s);
  void update();
  void write_loop_state(const std::filesystem::path& dir) const;
  void read_loop_state(const std::filesystem::path& dir);

  LoopParts p_;
  LoopCallbacks builtins_;
  TrainState* state_ = nullptr;
  LoopResult result_;
  report::ProgressBar* progress_ = nullptr;  // while run() is active (evals clear it)
  double lr_ = 0;
  bool stopping_ = false;
  int64_t metrics_mark_ = -1;  // mark_final_metrics(); -1: none
};

}  // namespace sculpt::trainers
