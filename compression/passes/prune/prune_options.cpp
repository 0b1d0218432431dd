// The prune pass's keys and their cross-checks.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "compression/passes/prune/prune.h"

namespace sculpt::compression {

void PruneOptions::visit(config::Visitor& v) {
  v.choice("pattern", pattern, prune::kPatternKinds,
           "prune: what is removed: single weights, n of every m, b x b blocks, output "
           "channels (conv filters, Linear neurons, FFN neurons), or attention heads (groups of "
           "an output projection's inputs, e.g. layers '.*attn\\.o')");
  v.field("n", n, "prune n:m: weights kept in every group of m", config::Range::at_least(1));
  v.field("m", m, "prune n:m: group size along the input dimension", config::Range::at_least(2));
  v.field("block", block, "prune block: side of the square blocks", config::Range::at_least(1));
  v.field("heads", heads, "prune head: attention heads of the chosen layers (their inputs split "
          "into this many groups)", config::Range::at_least(0));
  v.choice("scorer", scorer, prune::kScorerKinds,
           "prune: importance of a weight: |w|, |w * grad| or -w * grad summed since the last "
           "mask update, or fisher: F w^2 / 2 with F the ewc pass's Fisher when the recipe has one, "
           "else the mean squared gradient since the last update");
  v.choice("schedule", schedule, prune::kScheduleKinds,
           "prune: how the sparsity reaches its target (see docs: formulas)");
  v.field("sparsity", sparsity, "prune: final fraction of weights removed (n:m: 1 - n/m)",
          config::Range::half_open(0, 1));
  v.field("initial_sparsity", initial_sparsity,
          "prune: sparsity at start, a number in [0, 1), or from_weights (keep the zeros of the "
          "starting weights, e.g. a pruned model.init)");
  v.choice("unit", unit, kScheduleUnits,
           "prune: deprecated, unit of bare numbers in start, end and every (write 2e for epochs)");
  v.step_point("start", start, "prune: first mask update (t0): steps, 2e or a fraction of the run");
  v.step_point("end", end, "prune: last mask update; 0: three quarters of the run");
  v.step_point("every", every, "prune: distance between mask updates; 0: (end - start) / 10");
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
  v.choice("runtime", runtime, kBlockRuntimes,
           "prune block: at the end, Linear layers run block-sparse (BSR) on CPU: auto when the "
           "block density is at most the measured CPU crossover of the kernels' dispatcher, bsr "
           "always, dense never");
  v.field("uniform", uniform,
          "prune: remove the same number of units (heads, channels, neurons) in every layer of the "
          "same size: a group shares its schedule but not its budget, and overrides may not change "
          "sparsity (Hugging Face configs have one width for every layer: export --format hf)");
  v.field("remove", remove,
          "prune channel/head: remove pruned channels (mlp, lenet5, resnet inner convs) or attention "
          "heads (transformers) at the end: a smaller dense model");
  v.field("export", export_sparse,
          "prune: store the layer sparse in <run>/sparse at the end (block patterns as BSR, others "
          "as a bitmask + values, where smaller than dense); sculpt eval --sparse reads it");
}

bool PruneOptions::initial_from_weights() const { return initial_sparsity == "from_weights"; }

double PruneOptions::final_sparsity() const {
  if (pattern == prune::PatternKind::n_m)
    return 1.0 - static_cast<double>(n) / static_cast<double>(m);
  return sparsity;
}

void PruneOptions::check(config::Checker& c) const {
  using prune::PatternKind;
  if (!initial_from_weights()) {
    char* rest = nullptr;
    const double v = std::strtod(initial_sparsity.c_str(), &rest);
    if (rest == initial_sparsity.c_str() || *rest != '\0' || !(v >= 0 && v < 1))
      c.error("initial_sparsity", "must be a number in [0, 1) or from_weights, not '" +
                                      initial_sparsity + "'");
    else if (v > sparsity && pattern != PatternKind::n_m)
      c.error("initial_sparsity", "is above sparsity " + std::to_string(sparsity));
  }
  if (pattern == PatternKind::n_m && n >= m) c.error("n", "n:m needs n < m");
  if (pattern == PatternKind::head && heads < 1) c.error("heads", "pattern head needs heads >= 1");
  if (min_sparsity > max_sparsity) c.error("min_sparsity", "is above max_sparsity");
  // Comparable when both are in one unit (the deprecated unit: epochs makes every bare one so).
  const bool same_unit = end.unit == start.unit || unit == ScheduleUnit::epochs;
  if (end.value > 0 && same_unit && end.value <= start.value &&
      schedule != prune::ScheduleKind::one_shot)
    c.error("end", "must be after start (or 0: three quarters of the run)");
}

int64_t PruneOptions::step_of(config::StepPoint p, int64_t total, int64_t per_epoch,
                              const char* key) const {
  // The deprecated unit: epochs reads bare numbers (steps, fractions) as epochs.
  if (unit == ScheduleUnit::epochs) p.unit = config::StepPoint::Unit::epochs;
  return p.resolve(total, per_epoch, std::string("compression prune: ") + key);
}

prune::Schedule PruneOptions::schedule_for(int64_t total, int64_t per_epoch) const {
  auto steps = [&](const config::StepPoint& p, const char* key) {
    return step_of(p, total, per_epoch, key);
  };
  prune::Schedule s;
  s.kind = schedule;
  s.initial = initial_from_weights() ? 0.0 : std::strtod(initial_sparsity.c_str(), nullptr);
  s.final = final_sparsity();
  s.start = steps(start, "start");
  s.end = end.value > 0 ? steps(end, "end") : std::max<int64_t>(s.start + 1, total * 3 / 4);
  if (s.end <= s.start) s.end = s.start + 1;
  s.every = every.value > 0 ? std::max<int64_t>(1, steps(every, "every"))
                            : std::max<int64_t>(1, (s.end - s.start) / 10);
  s.cycles = cycles;
  s.rigl_alpha = rigl_alpha;
  return s;
}

}  // namespace sculpt::compression
