// How one optimizer step runs on this process, chosen once in fit() (make_step_strategy):
//   local     one process, or data-parallel ranks that all-reduce gradients (DDP)
//   pipeline  this process's stage of the model; micro-batches flow through the stages
//             (GPipe or 1F1B), replicas of a stage all-reduce its gradients
// The loop (train_loop.h) asks the strategy for a step's forwards and backwards, the gradient
// clip and the evaluation; it never asks which strategy it has.
#pragma once

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "trainers/fit_pieces.h"

namespace sculpt::data {
class Loader;
struct LoaderOptions;
}  // namespace sculpt::data

namespace sculpt::distributed {
class DataParallel;
}

namespace sculpt::trainers {

struct StepResult;

// DDP over what `optimizer` trains (the model's parameters and those passes added), named for
// error messages; the model's buffers follow rank 0's.
std::unique_ptr<distributed::DataParallel> make_data_parallel(
    const config::DistributedConfig& dc, Collectives& comm, models::Model& model,
    torch::optim::Optimizer& optimizer);

class StepStrategy {
 public:
  virtual ~StepStrategy() = default;

  // --- set-up, in fit() ---
  // Where the whole model is built (a pipeline builds it on the host and keeps a stage).
  virtual c10::Device build_device() const = 0;
  // The model this process trains (a pipeline stage keeps its blocks of `whole`) and the task;
  // `sample` (the passes' sample rows' inputs) becomes this process's inputs for them.
  virtual std::unique_ptr<models::Model> take_model(std::unique_ptr<models::Model> whole,
                                                    tasks::Task& task, at::Tensor& sample) = 0;
  // Rank, world and collectives the passes agree through; this process's share of the rows.
  virtual void set_world(StepContext& hook) const = 0;
  virtual int64_t rows_per_process(int64_t rows) const = 0;
  virtual int processes_sharing_data() const = 0;
  // UserError when a pass of the recipe cannot run under this strategy, naming what is missing.
  virtual void check_callbacks(const Callbacks& callbacks) const = 0;
  // Where checkpoints go, and which one to resume from (run.resume).
  virtual std::filesystem::path checkpoint_dir() const = 0;
  virtual std::optional<std::filesystem::path> resume_point() = 0;

  // --- the loop ---
  // Before the first step of a loop: the loader's shard; the gradient reduction over what
  // `optimizer` trains (the model of take_model and the passes' parameters).
  virtual void begin(data::LoaderOptions& loader, torch::optim::Optimizer& optimizer) = 0;
  // One optimizer step's forwards and backwards: up to trainer.grad_accumulation micro-batches
  // from `loader`, the passes' on_batch and extra_loss around each; gradients accumulate.
  virtual void forward_backward(data::Loader& loader, StepContext& hook,
                                const Callbacks& callbacks, TrainState& st, StepResult& s) = 0;
  // The last forward_backward's micro-batches again, as the passes' on_batch left them (it is
  // not called again: replay's rows, say, stay the same), with extra_loss and DDP's reduction:
  // SAM's gradient at the perturbed weights (trainers/sam.h). The local strategy keeps a
  // step's batches when optimizer.sam_rho > 0; the pipeline has no such step (config.cpp
  // refuses optimizer.sam_rho with it, and this default throws).
  virtual void forward_backward_again(StepContext& hook, const Callbacks& callbacks,
                                      const TrainState& st, StepResult& s);
  // Clips the gradient norm of what this process trains (a pipeline: of the whole replica).
  virtual void clip_grad_norm(double max_norm) = 0;
  // Metrics of the model over `ds` (every rank gets those of the whole of `ds`).
  virtual std::map<std::string, double> evaluate(const data::Dataset& ds) = 0;
  // Whether this process writes checkpoints.
  virtual bool writes_checkpoints() const = 0;
  // Maps the outputs before the loss and the metrics (task-incremental logit masks).
  virtual void set_output_map(OutputMap map) = 0;
  // The task evaluate() measures with (null: take_model's): an increment's own, e.g. a
  // retrieval increment decoding with its corpus's ID trie. Training keeps take_model's task.
  virtual void set_eval_task(const tasks::Task* /*task*/) {}

  // --- the end ---
  // model.safetensors, summary.json (with what the strategy adds) and report.html.
  virtual void write_outputs(nlohmann::json summary, const Callbacks& callbacks) = 0;
};

// The strategy the config asks for: a pipeline (distributed.pipeline.stages > 1) or local
// (DDP when the process runs in a group of several ranks); `bf16`: forwards under autocast.
std::unique_ptr<StepStrategy> make_step_strategy(RunContext& ctx, bool bf16);
// The local strategy alone (trainers that do not support a pipeline).
std::unique_ptr<StepStrategy> make_local_strategy(RunContext& ctx, bool bf16);

}  // namespace sculpt::trainers
