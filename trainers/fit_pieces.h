// The pieces every trainer's fit() is built from, in the order fit() uses them: the StepContext
// the passes read, attaching the recipe, the optimizer, the step count, resuming, the metrics
// writer (metrics.jsonl + TensorBoard), and the run's outputs (summary.json, model.safetensors,
// report.html). The step loop itself is train_loop.h; how one step runs is step_strategy.h.
#pragma once

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "core/checkpoint/checkpoint.h"
#include "core/config/config.h"
#include "core/data/dataset.h"
#include "core/models/model.h"
#include "core/run/run_context.h"
#include "core/tasks/task.h"
#include "trainers/callback.h"

namespace torch::optim {
class Optimizer;
}
namespace sculpt::report {
class EventWriter;
}

namespace sculpt::trainers {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0);

// Maps the model's outputs before the loss and the metrics (e.g. masks the logits of classes
// outside the current task); empty: identity.
using OutputMap = std::function<at::Tensor(const at::Tensor&)>;

// The StepContext every hook reads (device, world, run, data, the run's task), for training on
// `train`.
StepContext make_hook(RunContext& ctx, const data::Dataset& train,
                      std::shared_ptr<const tasks::Task> task);
// The rows of `train` that attach() sees as its sample batch (the first few).
at::Tensor attach_sample_rows(const data::Dataset& train);
// attach() of every callback with a sample of the first training rows; the model is moved to
// the run's device again afterwards (a pass may have added tensors). `stage_inputs`, when
// given, replaces the sample's inputs (a pipeline stage's inputs for those rows).
void attach_callbacks(const Callbacks& callbacks, models::Model& model, StepContext& hook,
                      const data::Dataset& train, const at::Tensor& stage_inputs = {});
// The configured optimizer over the model's parameters and those the callbacks train. It sets
// every group's lr to optimizer.lr once; from then on only the LR callback changes it.
std::unique_ptr<torch::optim::Optimizer> build_optimizer(const config::Config& c,
                                                         models::Model& model,
                                                         const Callbacks& callbacks);

// `base` (undefined: nothing) plus every callback's extra_loss term, in recipe order, in fp32.
at::Tensor add_extra_losses(at::Tensor base, const Callbacks& callbacks, models::Model& model,
                            const StepContext& hook);

// Steps of one fit over `rows` training rows: trainer.max_steps, else epochs x steps per epoch.
// UserError (naming `what`) when the rows make no batch. `steps_per_epoch`, when given, gets
// the optimizer steps of one pass over the rows.
int64_t total_steps(const config::TrainerConfig& t, const config::DataConfig& d, int64_t rows,
                    const std::string& what, int64_t* steps_per_epoch = nullptr);

// Restores a checkpoint: the passes' state first (loading it may draw random numbers, e.g. a
// teacher's init), then model, optimizer, RNG and position. With `same_config` (a checkpoint
// of this run), warns when it was written with another config.
TrainState resume_from(const std::filesystem::path& dir, const config::Config& c,
                       models::Model& model, torch::optim::Optimizer& optimizer,
                       const Callbacks& callbacks, bool same_config = true);

// A checkpoint written by another number of ranks: its position in the epoch (batches of the
// old shard) becomes the same count of samples in the new shards, and, when epochs decide the
// length, the step count follows the new steps per epoch.
void resume_at_world_size(TrainState& st, int world_size, int64_t batch_size,
                          int64_t steps_per_epoch, int64_t grad_accumulation,
                          bool fixed_steps);

// Data parallelism: checks that every rank holds, bit for bit, rank 0's model state and every
// callback's state (tensors and metadata); logs the count when they agree, else throws on every
// rank an error naming the ranks and the first tensors that differ. Collective.
void verify_ranks_agree(Collectives& comm, models::Model& model, const Callbacks& callbacks);

// Training rows one rank reads per epoch (all of them in a single process).
int64_t rows_per_rank(const RunContext& ctx, int64_t rows);

// metrics.jsonl (one JSON object per line, elapsed_s added) and, when asked, TensorBoard
// scalars <split>/<key> of every numeric value. With write=false (ranks other than 0) it
// records nothing. A run resumed from `resumed_from` appends; when that checkpoint is one of
// this run's own, the records written after it (by the process that was killed) are cut off
// first, at the length the checkpoint's loop.json recorded, so that the resumed run's records
// follow exactly where the checkpoint left off. Without a resume point it starts the file anew.
class MetricsLog {
 public:
  MetricsLog(const std::filesystem::path& run_dir,
             const std::optional<std::filesystem::path>& resumed_from, bool tensorboard,
             Clock::time_point t0, bool write = true);
  ~MetricsLog();
  void record(nlohmann::json j);
  // Bytes of metrics.jsonl written so far (what a checkpoint records); 0 when not writing.
  int64_t bytes() const { return bytes_; }

 private:
  std::ofstream out_;
  std::filesystem::path file_;
  int64_t bytes_ = 0;
  std::unique_ptr<report::EventWriter> events_;
  Clock::time_point t0_;
};

// What one run of the step loop did.
struct LoopResult {
  bool interrupted = false;  // stopped by SIGINT/SIGTERM after writing a checkpoint
  bool early_stopped = false;
  int64_t skipped_steps = 0;
  double first_step_s = -1;  // process start to the end of the first step
  double timed_step_s = 0;   // time of the later steps
  int64_t timed_steps = 0;
  // Adds another loop's counts and times (a trainer that runs the loop several times).
  void add(const LoopResult& r) {
    if (first_step_s < 0) first_step_s = r.first_step_s;
    timed_step_s += r.timed_step_s;
    timed_steps += r.timed_steps;
    skipped_steps += r.skipped_steps;
  }
};

struct FitResult;
// summary.json's common part: steps, time, model size, config hash, step timing, final metrics
// per split, each callback's summary.
nlohmann::json run_summary(const RunContext& ctx, models::Model& model, const FitResult& result,
                           const LoopResult& loop, const Callbacks& callbacks);
// What fit() returns when SIGINT/SIGTERM stopped it after `steps` (a checkpoint is written).
FitResult interrupted_at(int64_t steps, Clock::time_point t0);
// model.safetensors, summary.json and report.html into the run directory.
void write_run_outputs(const RunContext& ctx, models::Model& model,
                       const nlohmann::json& summary);
// The same with the model's tensors given (a pipeline's, gathered from its stages).
void write_run_outputs(const RunContext& ctx, const io::NamedTensors& weights,
                       const nlohmann::json& summary);

}  // namespace sculpt::trainers
