// The trainer's side of pipeline parallelism (distributed.pipeline, docs/pipeline.md): one
// process's stage of one model replica, and what the step loop, evaluation, checkpoints and the
// final export do differently on it. The schedules and the transport are distributed/pipeline.h.
//
// World = stages x data-parallel replicas: rank r is stage r % stages of replica r / stages.
// Every process builds the whole model on the host from the same seed, keeps its stage's blocks
// (under their names, so tensor names match the whole model's) and moves them to its device.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "core/config/config.h"
#include "core/io/safetensors.h"
#include "trainers/callback.h"

namespace sculpt {
class Collectives;
class RunContext;
namespace data {
class Dataset;
struct Batch;
}  // namespace data
namespace models {
class Model;
}
namespace tasks {
class Task;
}
namespace distributed {
class DataParallel;
namespace pipeline {
class Transport;
}
}  // namespace distributed
}  // namespace sculpt

namespace sculpt::trainers {

struct PipelineStage {
  PipelineStage();
  ~PipelineStage();
  PipelineStage(PipelineStage&&) noexcept;
  int64_t stage = 0, stages = 1;       // this process's stage of its replica
  int64_t replica = 0, replicas = 1;   // this process's data-parallel replica
  int64_t first_block = 0, last_block = 0;  // the whole model's blocks [first, last) held here
  bool gpipe = false;                  // schedule: gpipe, else 1f1b
  int64_t microbatches = 1;
  std::shared_ptr<Collectives> pipe;   // this replica's stages (its rank = the stage)
  std::shared_ptr<Collectives> data;   // this stage's replicas; null with one replica
  std::unique_ptr<distributed::pipeline::Transport> transport;  // over `pipe`
  int64_t whole_params = 0;            // parameters of the whole model
  // Measured over the training steps: compute, time blocked waiting for a neighbour, and the
  // most micro-batches whose activations were held at once.
  double busy_s = 0, wait_s = 0;
  int64_t peak_live = 0;

  bool first() const { return stage == 0; }
  bool last() const { return stage == stages - 1; }
  // Where passes agree with the other replicas of this stage (local with one replica).
  Collectives& data_collectives() const;
  // Replica 0 of each stage writes that stage's checkpoints.
  bool writes_checkpoints() const { return replica == 0; }
};

// Whether the config asks for a pipeline.
bool pipelined(const config::Config& c);

// Joins this process's pipeline and data-parallel groups, picks its blocks (explicit cuts, or
// balanced by parameter count or by measured time) and returns the stage's model: the blocks of
// `whole` it holds, on `device`. `sample` (a few training inputs) becomes the stage's inputs for
// them (the earlier blocks' activations), for the passes' attach. UserError when the world is not
// a multiple of the stages or the model has fewer blocks than stages.
std::unique_ptr<models::Model> make_stage(RunContext& ctx, models::Model& whole,
                                          at::Tensor& sample, PipelineStage& ps);

// UserError naming every callback that cannot run per stage, and why.
void check_stage_callbacks(const Callbacks& callbacks);

// Rows each replica reads per epoch.
int64_t rows_per_replica(const RunContext& ctx, int64_t rows);

// One optimizer step's forwards and backwards of batch `b` on this stage (micro-batches under
// the configured schedule); gradients accumulate into the stage's parameters. `ddp` (this
// stage's replicas) reduces them during the last backward. Returns the batch's mean task loss
// on the last stage, 0 elsewhere, and the stage's peak count of micro-batches held.
struct StageStep {
  double loss = 0;
  double extra_loss = 0;
  int64_t peak_live = 0;
};
// `extra_loss` (optional) is the passes' term of this stage's own parameters, added once.
StageStep pipeline_step(PipelineStage& ps, models::Model& model, const tasks::Task& task,
                        const data::Batch& b, c10::Device device, bool bf16,
                        distributed::DataParallel* ddp,
                        const std::function<at::Tensor()>& extra_loss = {});

// Metrics of the whole model over `ds`, on every stage of the replica: the last stage reads the
// data and drives the task's evaluation; each forward it asks for runs through every stage.
std::map<std::string, double> pipeline_evaluate(PipelineStage& ps, models::Model& model,
                                                const tasks::Task& task, const data::Dataset& ds,
                                                const config::DataConfig& data, c10::Device device,
                                                bool bf16);

// Clips the gradients of the whole replica (every stage's parameters) to `max_norm` by their
// global norm; collective over the stages. Returns the norm before clipping.
double clip_grad_norm(PipelineStage& ps, models::Model& model, double max_norm);

// The whole model's tensors on stage 0 of replica 0 (sent there by every stage); empty on every
// other process. Collective over the stages.
io::NamedTensors gather_model(PipelineStage& ps, models::Model& model);

// Every stage's callback summaries, in stage order: [{stage, pass, summary}, ...] on stage 0.
nlohmann::json gather_summaries(PipelineStage& ps, const Callbacks& callbacks);

// Every stage, in stage order: its blocks and parameters, and its measured busy and waiting
// seconds, idle fraction (the bubble) and peak micro-batches held (collective over the stages).
nlohmann::json stage_report(PipelineStage& ps, models::Model& model);

// Stage k's part of the run: <run>/stage_<k> (its checkpoints/ live there).
std::filesystem::path stage_dir(const std::filesystem::path& run_dir, int64_t stage);

// run.resume under a pipeline: "auto" or a pipeline run's directory. The stages agree on the
// newest step they all have and each returns its own checkpoint folder of that step (none when
// some stage has no checkpoint: every stage starts fresh). Collective over the world.
std::optional<std::filesystem::path> resolve_stage_resume(RunContext& ctx,
                                                          const PipelineStage& ps);

}  // namespace sculpt::trainers
