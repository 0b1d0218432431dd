// prune: gradual, structured and block pruning (issue 7, DESIGN.md §5). Scorer x MaskCreator x
// Allocator x Schedule, each chosen once per layer at attach from its keys: a Scorer object
// (scorers.h), a Pattern, an Allocation per mask update and a Schedule (prune_core.h, pure
// functions of tensors that switch on enums). The mask is a WeightTransform
// on each chosen layer (one bool per unit, bits in checkpoints); after every optimizer step the
// pruned raw weights and their optimizer state (SGD momentum, Adam moments) are zeroed so they
// do not regrow. finalize bakes the masks into the weights; for channel pruning of mlp and
// lenet5 it removes the pruned neurons/filters physically (a smaller dense model).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "compression/pass.h"
#include "compression/passes/prune/prune_core.h"
#include "compression/passes/prune/scorers.h"

namespace sculpt::compression {

// Deprecated: the unit of bare numbers in start/end/every (write "2e" instead of unit: epochs).
enum class ScheduleUnit { steps, epochs };
inline const config::Spellings<ScheduleUnit> kScheduleUnits = {{ScheduleUnit::steps, "steps"},
                                                               {ScheduleUnit::epochs, "epochs"}};
// Which Linear layers run block-sparse (BSR) after block pruning.
enum class BlockRuntime { automatic, bsr, dense };
inline const config::Spellings<BlockRuntime> kBlockRuntimes = {
    {BlockRuntime::automatic, "auto"}, {BlockRuntime::bsr, "bsr"}, {BlockRuntime::dense, "dense"}};

struct PruneOptions : config::Section {
  prune::PatternKind pattern = prune::PatternKind::unstructured;  // unstructured | n:m | ...
  int64_t n = 2, m = 4;                  // n:m: keep n of every m consecutive weights
  int64_t block = 4;                     // block: side b of the b x b blocks
  int64_t heads = 0;                     // head: attention heads of the (output projection) layer
  prune::ScorerKind scorer = prune::ScorerKind::magnitude;  // magnitude | taylor | movement | ...
  prune::ScheduleKind schedule = prune::ScheduleKind::agp;  // one_shot | agp | iterative | ...
  double sparsity = 0.5;                 // final target (n:m: 1 - n/m, this key is unused)
  std::string initial_sparsity = "0";    // a number in [0, 1), or from_weights
  ScheduleUnit unit = ScheduleUnit::steps;  // deprecated: unit of bare numbers in start/end/every
  config::StepPoint start;               // first mask update (t0): 500, 2e or 0.1 of the run
  config::StepPoint end;                 // last update; 0: three quarters of the run
  config::StepPoint every;               // distance between updates; 0: (end - start) / 10
  int64_t cycles = 3;                    // iterative: prune -> fine-tune cycles
  double rigl_alpha = 0.3;               // rigl: initial drop fraction
  std::string group;                     // layers with the same group share one budget
  double min_sparsity = 0.0;             // per-layer bounds under a shared budget
  double max_sparsity = 1.0;
  BlockRuntime runtime = BlockRuntime::automatic;  // block: auto (BSR below the crossover) | ...
  bool uniform = false;                  // the same number of units removed in every layer
  bool remove = true;                    // channel: physically remove pruned channels at finalize
  bool export_sparse = true;             // write the layer sparse in <run>/sparse at the end
  void visit(config::Visitor& v) override;
  void check(config::Checker& c) const override;
  // The schedule these keys give in a run of `total_steps` with `steps_per_epoch` (the
  // trainer's: this rank's shard); end 0: three quarters of the run.
  prune::Schedule schedule_for(int64_t total_steps, int64_t steps_per_epoch) const;
  // One of start/end/every as a step (bare numbers in epochs under the deprecated unit: epochs).
  int64_t step_of(config::StepPoint p, int64_t total_steps, int64_t steps_per_epoch,
                  const char* key) const;
  // initial_sparsity: from_weights (the zeros of the starting weights stay pruned).
  bool initial_from_weights() const;
  // The sparsity the pattern ends at (n:m: 1 - n/m).
  double final_sparsity() const;
  // The MaskCreator these keys choose.
  prune::Pattern pattern_spec() const { return {pattern, n, m, block, heads}; }
};

std::unique_ptr<CompressionPass> make_prune_pass(const config::PassConfig& cfg);

}  // namespace sculpt::compression
