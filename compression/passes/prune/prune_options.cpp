// The prune pass's keys and their cross-checks.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "compression/passes/prune/prune.h"
#include "core/data/dataset.h"
#include "core/run/run_context.h"

namespace sculpt::compression {

void PruneOptions::visit(config::Visitor& v) {
  v.choice("pattern", pattern, {"unstructured", "n:m", "block", "channel", "head"},
           "prune: what is removed: single weights, n of every m, b x b blocks, output "
           "channels (conv filters, Linear neurons, FFN neurons), or attention heads (groups of "
           "an output projection's inputs, e.g. layers '.*attn\\.o')");
  v.field("n", n, "prune n:m: weights kept in every group of m", config::Range::at_least(1));
  v.field("m", m, "prune n:m: group size along the input dimension", config::Range::at_least(2));
  v.field("block", block, "prune block: side of the square blocks", config::Range::at_least(1));
  v.field("heads", heads, "prune head: attention heads of the chosen layers (their inputs split "
          "into this many groups)", config::Range::at_least(0));
  v.choice("scorer", scorer, {"magnitude", "taylor", "movement", "fisher"},
           "prune: importance of a weight: |w|, |w * grad| or -w * grad summed since the last "
           "mask update, or fisher: F w^2 / 2 with F the ewc pass's Fisher when the recipe has one, "
           "else the mean squared gradient since the last update");
  v.choice("schedule", schedule, {"one_shot", "agp", "iterative", "exponential", "rigl"},
           "prune: how the sparsity reaches its target (see docs: formulas)");
  v.field("sparsity", sparsity, "prune: final fraction of weights removed (n:m: 1 - n/m)",
          config::Range::half_open(0, 1));
  v.field("initial_sparsity", initial_sparsity,
          "prune: sparsity at start, a number in [0, 1), or from_weights (keep the zeros of the "
          "starting weights, e.g. a pruned model.init)");
  v.choice("unit", unit, {"steps", "epochs"}, "prune: unit of start, end and every");
  v.field("start", start, "prune: first mask update (t0)", config::Range::at_least(0));
  v.field("end", end, "prune: last mask update; 0: three quarters of the run",
          config::Range::at_least(0));
  v.field("every", every, "prune: distance between mask updates; 0: (end - start) / 10",
          config::Range::at_least(0));
  v.field("cycles", cycles, "prune iterative: prune -> fine-tune cycles",
          config::Range::at_least(1));
  v.field("rigl_alpha", rigl_alpha, "prune rigl: fraction of active weights swapped at first",
          config::Range::closed(0, 1));
  v.field("group", group,
          "prune: layers naming the same group share one sparsity budget (global ranking of "
          "scores); empty: the layer has its own target");
  v.field("min_sparsity", min_sparsity, "prune: lower bound of a layer's share of a group budget",
          config::Range::closed(0, 1));
  v.field("max_sparsity", max_sparsity, "prune: upper bound of a layer's share of a group budget",
          config::Range::closed(0, 1));
  v.choice("runtime", runtime, {"auto", "bsr", "dense"},
           "prune block: at the end, Linear layers run block-sparse (BSR) on CPU: auto when the "
           "block density is at most the measured CPU crossover of the kernels' dispatcher, bsr "
           "always, dense never");
  v.field("remove", remove,
          "prune channel/head: remove pruned channels (mlp, lenet5, resnet inner convs) or attention "
          "heads (transformers) at the end: a smaller dense model");
  v.field("export", export_sparse,
          "prune: store the layer sparse in <run>/sparse at the end (block patterns as BSR, others "
          "as a bitmask + values, where smaller than dense); sculpt eval --sparse reads it");
}

void PruneOptions::check(config::Checker& c) const {
  if (initial_sparsity != "from_weights") {
    char* rest = nullptr;
    const double v = std::strtod(initial_sparsity.c_str(), &rest);
    if (rest == initial_sparsity.c_str() || *rest != '\0' || !(v >= 0 && v < 1))
      c.error("initial_sparsity", "must be a number in [0, 1) or from_weights, not '" +
                                      initial_sparsity + "'");
    else if (v > sparsity && pattern != "n:m")
      c.error("initial_sparsity", "is above sparsity " + std::to_string(sparsity));
  }
  if (pattern == "n:m" && n >= m) c.error("n", "n:m needs n < m");
  if (pattern == "head" && heads < 1) c.error("heads", "pattern head needs heads >= 1");
  if (min_sparsity > max_sparsity) c.error("min_sparsity", "is above max_sparsity");
  if (end > 0 && end <= start && schedule != "one_shot")
    c.error("end", "must be after start (or 0: three quarters of the run)");
}

prune::Schedule PruneOptions::schedule_for(int64_t total, double per_epoch) const {
  const double scale = unit == "epochs" ? per_epoch : 1.0;
  auto steps = [&](double v) { return static_cast<int64_t>(std::llround(v * scale)); };
  prune::Schedule s;
  s.kind = schedule;
  s.initial = initial_sparsity == "from_weights" ? 0.0 : std::strtod(initial_sparsity.c_str(), nullptr);
  s.final = pattern == "n:m" ? 1.0 - static_cast<double>(n) / static_cast<double>(m) : sparsity;
  s.start = steps(start);
  s.end = end > 0 ? steps(end) : std::max<int64_t>(s.start + 1, total * 3 / 4);
  if (s.end <= s.start) s.end = s.start + 1;
  s.every = every > 0 ? std::max<int64_t>(1, steps(every)) : std::max<int64_t>(1, (s.end - s.start) / 10);
  s.cycles = cycles;
  s.rigl_alpha = rigl_alpha;
  return s;
}

int64_t prune_steps_per_epoch(const StepContext& ctx) {
  if (ctx.steps_per_epoch > 0) return ctx.steps_per_epoch;
  if (!ctx.run || !ctx.train) return 0;
  const auto& c = ctx.run->config();
  const int64_t rows = ctx.train->size(), bs = std::max<int64_t>(1, c.data.batch_size);
  const int64_t batches = c.data.drop_last ? rows / bs : (rows + bs - 1) / bs;
  const int64_t k = std::max<int64_t>(1, c.trainer.grad_accumulation);
  return (batches + k - 1) / k;
}

}  // namespace sculpt::compression
