// Callbacks: what a trainer calls around each step, in the order of the run's recipe. A
// compression pass (compression/pass.h) is a Callback; trainers know only this interface and
// never a pass by name (DESIGN.md §3, §5). Every hook has a default that does nothing.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/data/loader.h"
#include "core/io/safetensors.h"

namespace torch::optim {
class Optimizer;
}

namespace sculpt {
class RunContext;
class Collectives;
namespace models {
class Model;
}
namespace data {
class Dataset;
struct Batch;
struct DataSpec;
}  // namespace data
namespace tasks {
class Task;
}
}  // namespace sculpt

namespace sculpt::trainers {

// What the run's optimizer does with a gradient, for passes that reason about its stability
// (EWC): read from the optimizer's typed options, never from its name.
struct OptimizerFacts {
  double lr = 0;          // base learning rate (optimizer.lr, before the schedule)
  double momentum = 0;    // SGD's momentum factor; 0 for adaptive optimizers
  bool adaptive = false;  // steps scaled per parameter by running moments (Adam, AdamW)
};

// What a hook may read. The pointers are valid during the hook only. `batch` is the current
// batch from on_batch on; in attach it is a sample of a few training rows (for shapes and
// calibration); null in finalize. `outputs` and `loss` are set in extra_loss.
struct StepContext {
  int64_t step = 0;         // optimizer steps already done (the step being made is step + 1)
  int64_t epoch = 0;
  int64_t increment = 0;    // continual learning: the current increment (0 otherwise)
  int64_t total_steps = 0;  // steps this fit() will make in all
  int64_t steps_per_epoch = 0;  // optimizer steps in one pass over the training split
  c10::Device device = c10::Device(c10::kCPU);
  int rank = 0;
  int world_size = 1;
  // How the ranks of a data-parallel run agree (core/run/collectives.h): passes all-reduce
  // observer ranges and Fisher estimates and broadcast masks through it. Never null in a
  // trainer's hooks; the single-process one leaves tensors as they are.
  Collectives* collectives = nullptr;
  const data::Batch* batch = nullptr;   // the current batch, on `device`
  const at::Tensor* outputs = nullptr;  // the model's outputs for `batch`
  const at::Tensor* loss = nullptr;     // the task's loss for `batch` (extra_loss and later)
  const RunContext* run = nullptr;      // config, run directory; log with sculpt::log
  const data::DataSpec* data = nullptr;  // what the training data holds (shapes, classes, vocab)
  const data::Dataset* train = nullptr;  // the training split (batch.rows index into it)
  bool augmented = false;                // the loader crops/flips: rows do not fix the inputs
  // The run's optimizer, from on_batch on (null in attach, which runs before it exists). A pass
  // that fixes parameter entries (pruning masks) zeroes their optimizer state (momentum, Adam
  // moments) through it, in after_step, so they do not regrow.
  torch::optim::Optimizer* optimizer = nullptr;
  // Facts about the run, so that a pass never reads the whole config (filled by make_hook).
  uint64_t seed = 0;                 // run.seed: passes derive their random streams from it
  data::LoaderOptions eval_loading;  // how evaluation loads rows (normalization, no shuffling)
  int64_t batch_size = 0;            // the training batch size (data.batch_size)
  bool pipelined = false;            // the model is split into pipeline stages
  OptimizerFacts optimizer_facts;    // the optimizer's step size, momentum, adaptivity
  std::shared_ptr<const tasks::Task> task;  // the run's task: per-sample log-likelihood, kind
  // A new model of the run's architecture, for the data the hook sees (random weights; the
  // caller loads its own): LwF's teacher, the quantized export's verifier.
  std::function<std::shared_ptr<models::Model>()> new_model;
};

// Everything a callback needs to continue exactly after a resume: tensors (saved in
// safetensors) and a JSON object (counters, schedule positions, RNG seeds).
struct CallbackState {
  io::NamedTensors tensors;
  nlohmann::json meta = nlohmann::json::object();
};

class Callback {
 public:
  virtual ~Callback() = default;
  // A short name for logs, checkpoints and summaries ("prune", "freeze").
  virtual std::string name() const = 0;
  // Before training: add transforms to layers, load a teacher, allocate state. Runs before the
  // optimizer is built, so parameters a pass adds are trained.
  virtual void attach(models::Model& /*model*/, const StepContext& /*ctx*/) {}
  // The batch before the forward pass (e.g. mix replay samples in).
  virtual void on_batch(data::Batch& /*batch*/, const StepContext& /*ctx*/) {}
  // A term added to the task loss (e.g. distillation, EWC); undefined: none.
  virtual at::Tensor extra_loss(models::Model& /*model*/, const StepContext& /*ctx*/) {
    return {};
  }
  // After backward, before the optimizer step (e.g. mask or freeze gradients).
  virtual void after_backward(models::Model& /*model*/, const StepContext& /*ctx*/) {}
  // After the optimizer step; ctx.step counts it already (e.g. advance a sparsity schedule).
  virtual void after_step(models::Model& /*model*/, const StepContext& /*ctx*/) {}
  // Continual learning: the end of an increment, with the data it trained on.
  virtual void on_increment_end(models::Model& /*model*/, const data::Dataset& /*seen*/,
                                const StepContext& /*ctx*/) {}
  // After the last step, before the final evaluation (e.g. bake masks, remove channels).
  virtual void finalize(models::Model& /*model*/, const StepContext& /*ctx*/) {}
  // Parameters the callback trains itself (e.g. a distillation projector); the trainer adds
  // them to the optimizer after attach. Save them in state_dict() to resume exactly.
  virtual std::vector<at::Tensor> parameters() const { return {}; }
  virtual CallbackState state_dict() const { return {}; }
  virtual void load_state_dict(const CallbackState& /*state*/) {}
  // What it did, for summary.json and report.html (sparsity per layer, bit widths, ...).
  virtual nlohmann::json summary() const { return nlohmann::json::object(); }
  // Pipeline parallelism runs the recipe on every stage, where the model holds only that
  // stage's blocks, the batch's inputs are the previous stage's activations and the hooks never
  // see the whole model's outputs (extra_loss gets none; its term's gradient reaches this stage's
  // parameters only). Empty when the callback works that way; otherwise why not (it reads the
  // model's outputs, changes the batch, or needs layers of other stages), for the error.
  virtual std::string pipeline_limitation() const {
    return "it does not declare that it can run on one pipeline stage";
  }
};

using Callbacks = std::vector<std::shared_ptr<Callback>>;

}  // namespace sculpt::trainers
