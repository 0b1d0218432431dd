// Pipeline parallelism (DESIGN.md §7): a model's block sequence cut into stages, one stage per
// process, micro-batches flowing forward (activations) and backward (gradients) between
// neighbouring stages under a GPipe or 1F1B schedule.
//
// This file is the transport-free part: where to cut, in which order a stage runs its
// forwards and backwards, and the step of one stage given a Transport to its neighbours.
// The same step runs over c10d send/recv between processes or over in-memory queues between
// threads (tests), so the schedule's arithmetic is tested apart from the network.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace sculpt {
class Collectives;
}

namespace sculpt::distributed::pipeline {

enum class Schedule { gpipe, one_f_one_b };
// "gpipe" | "1f1b"; UserError naming `what` otherwise.
Schedule parse_schedule(const std::string& name, const std::string& what);
const char* schedule_name(Schedule s);

// One unit of a stage's work: the forward or the backward of one micro-batch.
struct Action {
  bool forward = true;
  int64_t microbatch = 0;
  bool operator==(const Action& o) const {
    return forward == o.forward && microbatch == o.microbatch;
  }
};

// The order in which `stage` (0-based) of `stages` runs the forwards and backwards of
// `microbatches` micro-batches. GPipe: every forward, then every backward (in reverse, as
// autograd frees the newest activations first). 1F1B: stages - stage - 1 warm-up forwards,
// then one forward / one backward in turn, then the remaining backwards.
std::vector<Action> schedule(Schedule kind, int64_t stage, int64_t stages, int64_t microbatches);

// The most micro-batches whose activations a stage holds at once under `actions` (a forward
// adds one, its backward frees it).
int64_t peak_live(const std::vector<Action>& actions);

// The idle fraction of the slowest stage in theory, for equal per-stage costs:
// (p - 1) / (m + p - 1).
double theoretical_bubble(int64_t stages, int64_t microbatches);

// Block index ranges [first, last) of each stage.
using StageRanges = std::vector<std::pair<int64_t, int64_t>>;

// Contiguous ranges of `weights.size()` blocks over `stages` stages that minimise the largest
// stage's total weight (parameter counts or measured per-block times). Every stage gets at
// least one block; UserError when there are fewer blocks than stages.
StageRanges balance(const std::vector<double>& weights, int64_t stages);

// Ranges from explicit cut points: each cut is a block name or a block index and starts a new
// stage, so `stages - 1` cuts in increasing order. UserError (naming `what`) on unknown names,
// indices out of range, unordered or duplicate cuts, or the wrong number of cuts.
StageRanges split_at(const std::vector<std::string>& block_names,
                     const std::vector<std::string>& cuts, int64_t stages,
                     const std::string& what);

// How one stage reaches its neighbours. send() must not keep a reference that the caller may
// still change; recv() returns a fresh tensor (any shape and dtype: the header travels too).
// Sends may complete later (a neighbour sending to us at the same time must not deadlock
// them); flush() waits for every send still in flight and runs at the end of each step.
class Transport {
 public:
  virtual ~Transport() = default;
  virtual void send(const at::Tensor& t, int64_t to_stage) = 0;
  virtual at::Tensor recv(int64_t from_stage) = 0;
  virtual void flush() {}
};

// In-process transport between threads (tests, benchmarks): one unbounded queue per ordered
// pair of stages. endpoint(s) is stage s's view; the hub must outlive its endpoints.
class LocalHub {
 public:
  explicit LocalHub(int64_t stages);
  ~LocalHub();
  std::unique_ptr<Transport> endpoint(int64_t stage);
  struct Queues;

 private:
  std::unique_ptr<Queues> q_;
};

// Between processes: stage s is rank s of `comm` (the pipeline's group). A tensor travels as
// a small header (dtype, dimensions, sizes) and then its data, so shapes may change from one
// micro-batch to the next; received tensors are placed on `device`.
std::unique_ptr<Transport> collectives_transport(Collectives& comm, c10::Device device);

// What one stage computes: its blocks (input -> output) and, on the last stage, the loss of an
// output against its targets (a scalar, mean over the micro-batch's rows).
// Optional: before_backward(last) runs before each backward (last: the step's final one on
// this stage), after_backwards() once after the final one -- where data parallelism arms and
// collects its gradient reduction (DataParallel::begin_backward / finish_backward).
struct StageFunctions {
  std::function<at::Tensor(const at::Tensor&)> forward;
  std::function<at::Tensor(const at::Tensor&, const at::Tensor&)> loss;
  std::function<void(bool last)> before_backward;
  std::function<void()> after_backwards;
  // Optional: a scalar term of this stage's own parameters (a weight penalty), added to the
  // loss once per step: its gradient joins the step's final backward on this stage.
  std::function<at::Tensor()> extra_loss;
};

struct StepStats {
  double loss = 0;             // last stage: the batch's mean loss (others 0)
  double extra_loss = 0;       // this stage's extra_loss term (0 without one)
  int64_t peak_live = 0;       // most micro-batches with activations held at once
  double busy_seconds = 0;     // forward and backward compute
  double wait_seconds = 0;     // blocked in recv
  double total_seconds = 0;
  std::vector<at::Tensor> outputs;  // last stage: each micro-batch's output, without grad
};

// One optimizer step's forwards and backwards on one stage; gradients accumulate into the
// stage's parameters (the caller zeroes them before and steps the optimizer after).
// `inputs` (first stage) and `targets` (last stage) hold the micro-batches; other stages pass
// empty vectors but the same `rows` (rows per micro-batch, all stages agree). Each
// micro-batch's loss is weighted by its share of the rows, so the accumulated gradient is
// that of the whole batch's mean loss, exactly.
StepStats run_step(Schedule kind, int64_t stage, int64_t stages, const std::vector<int64_t>& rows,
                   const std::vector<at::Tensor>& inputs, const std::vector<at::Tensor>& targets,
                   const StageFunctions& fns, Transport& transport);

// Splits `rows` rows into `microbatches` near-equal micro-batch sizes (the first ones larger).
// UserError when there are fewer rows than micro-batches.
std::vector<int64_t> microbatch_rows(int64_t rows, int64_t microbatches);

// `t` cut along dim 0 into consecutive pieces of `rows` rows (views).
std::vector<at::Tensor> split_rows(const at::Tensor& t, const std::vector<int64_t>& rows);

}  // namespace sculpt::distributed::pipeline
