// prune: gradual, structured and block pruning (issue 7, DESIGN.md §5). Scorer x MaskCreator x
// Allocator x Schedule, all in compression/passes/prune/prune_core.h. The mask is a WeightTransform
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

namespace sculpt::compression {

struct PruneOptions : config::Section {
  std::string pattern = "unstructured";  // unstructured | n:m | block | channel | head
  int64_t n = 2, m = 4;                  // n:m: keep n of every m consecutive weights
  int64_t block = 4;                     // block: side b of the b x b blocks
  int64_t heads = 0;                     // head: attention heads of the (output projection) layer
  std::string scorer = "magnitude";      // magnitude | taylor | movement | fisher
  std::string schedule = "agp";          // one_shot | agp | iterative | exponential | rigl
  double sparsity = 0.5;                 // final target (n:m: 1 - n/m, this key is unused)
  std::string initial_sparsity = "0";    // a number in [0, 1), or from_weights
  std::string unit = "steps";            // unit of start/end/every: steps | epochs
  double start = 0;                      // first mask update (t0)
  double end = 0;                        // last update; 0: three quarters of the run
  double every = 0;                      // steps between updates; 0: (end - start) / 10
  int64_t cycles = 3;                    // iterative: prune -> fine-tune cycles
  double rigl_alpha = 0.3;               // rigl: initial drop fraction
  std::string group;                     // layers with the same group share one budget
  double min_sparsity = 0.0;             // per-layer bounds under a shared budget
  double max_sparsity = 1.0;
  std::string runtime = "auto";          // block: bsr | dense | auto (BSR below the crossover)
  bool remove = true;                    // channel: physically remove pruned channels at finalize
  bool export_sparse = true;             // write the layer sparse in <run>/sparse at the end
  void visit(config::Visitor& v) override;
  void check(config::Checker& c) const override;
  // The schedule these keys give in a run of `total_steps` (start/end/every in epochs scaled by
  // `steps_per_epoch` when unit is epochs; end 0: three quarters of the run).
  prune::Schedule schedule_for(int64_t total_steps, double steps_per_epoch) const;
};

// Optimizer steps per epoch for unit: epochs: the trainer's (this rank's shard), else computed
// from the run's whole training split; 0 when neither is known.
int64_t prune_steps_per_epoch(const StepContext& ctx);

std::unique_ptr<CompressionPass> make_prune_pass(const config::PassConfig& cfg);

}  // namespace sculpt::compression
