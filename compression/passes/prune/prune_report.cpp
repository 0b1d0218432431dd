// The prune pass's reports: its summary, description, pipeline limitation and sparsity curve.
#include <cmath>
#include <sstream>

#include "compression/passes/prune/prune_mask.h"
#include "compression/passes/prune/prune_pass.h"

namespace sculpt::compression::prune {

std::string PrunePass::pipeline_limitation() const {
  for (const auto& l : layers_) {
    if (l.o.pattern == PatternKind::channel && l.o.remove)  // (heads stay within their attention)
      return "layer " + l.name + " has its channels removed at finalize, which resizes the "
             "next layer, possibly on the next stage (set remove: false to keep the masks)";
    if (!l.o.group.empty())
      return "layer " + l.name + " shares the budget of group '" + l.o.group +
             "', which would be split per stage";
  }
  return {};
}

nlohmann::json PrunePass::summary() const {
  nlohmann::json layers = nlohmann::json::array();
  double params = 0, kept = 0, flops = 0, kept_flops = 0, bytes = 0;
  for (const auto& l : layers_) {
    const double n = static_cast<double>(l.rows * l.cols);
    const double s = sparsity(l);
    const double f = 2.0 * n * static_cast<double>(l.positions);
    nlohmann::json j = {{"name", l.name},
                        {"pattern", prune::pattern_label(l.pattern)},
                        {"shape", l.layer_shape},
                        {"schedule", config::spelling(prune::kScheduleKinds, l.o.schedule)},
                        {"scorer", config::spelling(prune::kScorerKinds, l.o.scorer)},
                        {"target", final_target(l)},
                        {"sparsity", s},
                        {"params", n},
                        {"remaining_params", n * (1 - s)},
                        {"flops", f},
                        {"remaining_flops", f * (1 - s)},
                        {"sparse_bytes", sparse_bytes(l)}};
    if (!l.o.group.empty()) j["group"] = l.o.group;
    layers.push_back(j);
    bytes += sparse_bytes(l);
    params += n;
    kept += n * (1 - s);
    flops += f;
    kept_flops += f * (1 - s);
  }
  nlohmann::json out = {{"layers", layers},
                        {"steps", step_},
                        {"params", params},
                        {"remaining_params", kept},
                        {"sparsity", params > 0 ? 1 - kept / params : 0.0},
                        {"flops", flops},
                        {"remaining_flops", kept_flops},
                        {"dense_bytes", params * 4},
                        {"sparse_bytes", bytes},
                        {"charts", charts()}};
  if (!removed_.is_null()) out["removed"] = removed_;
  if (!exported_.is_null()) out["sparse_export"] = exported_;
  if (!runtimes_.empty()) out["runtimes"] = runtimes_;
  return out;
}

std::string PrunePass::describe(const Target& t) const {
  static const PruneOptions defaults;
  const auto& o = t.options ? options_of<PruneOptions>(t) : defaults;
  std::ostringstream os;
  os << prune::pattern_label(o.pattern_spec()) << ", "
     << config::spelling(prune::kScorerKinds, o.scorer) << ", "
     << config::spelling(prune::kScheduleKinds, o.schedule) << " to " << o.final_sparsity();
  if (!o.group.empty()) os << " (budget shared by group " << o.group << ")";
  // The plan at a few points: in the schedule's unit; a relative end (0) is shown for a run of
  // 1000 steps (the run's length is not known here).
  using Unit = config::StepPoint::Unit;
  const bool epochs = o.unit == ScheduleUnit::epochs || o.end.unit == Unit::epochs;
  const int64_t per_epoch = 100;  // epochs are resolved at 100 steps and shown back in epochs
  // A relative end (0, or a fraction) is shown for a run of 1000 steps.
  const bool relative = o.end.value == 0 || (o.end.unit == Unit::fraction && !epochs);
  const int64_t total =
      relative ? 1000
               : static_cast<int64_t>(std::llround(
                     static_cast<double>(o.step_of(o.end, 0, per_epoch, "end")) * 1.25));
  Schedule s = o.schedule_for(total, per_epoch);
  os << "; planned sparsity";
  if (relative) os << " (in a run of 1000 " << (epochs ? "steps, 100 per epoch" : "steps") << ")";
  os << ":";
  for (int64_t at : {int64_t{0}, s.start, (s.start + s.end) / 2, s.end}) {
    os << " s(";
    if (epochs && !relative)
      os << "epoch " << static_cast<double>(at) / static_cast<double>(per_epoch);
    else
      os << at;
    os << ")=" << std::round(prune::planned_sparsity(s, at) * 1000) / 1000;
  }
  return os.str();
}

double PrunePass::sparsity(const Layer& l) const {
  const auto& m = l.mask->unit_mask();
  return m.defined() ? prune::mask_sparsity(m, l.sizes) : 0.0;
}

double PrunePass::sparse_bytes(const Layer& l) const {
  return prune::sparse_fp32_bytes(l.rows, l.cols, sparsity(l), l.pattern);
}

// The planned and actual sparsity (all chosen layers) at each mask update, as report.html
// charts: {"<name>": [[step, value], ...]}.
nlohmann::json PrunePass::charts() const {
  nlohmann::json planned = nlohmann::json::array(), actual = nlohmann::json::array();
  for (const auto& c : curve_) {
    planned.push_back({c[0], c[1]});
    actual.push_back({c[0], c[2]});
  }
  return {{"planned sparsity", planned}, {"actual sparsity", actual}};
}

// curve_: [step, planned, actual] at every mask update.
void PrunePass::record_curve(int64_t t) {
  double n = 0, planned = 0, actual = 0;
  for (const auto& l : layers_) {
    const double w = static_cast<double>(l.rows * l.cols);
    n += w;
    planned += w * prune::planned_sparsity(l.sched, t);
    actual += w * sparsity(l);
  }
  if (n > 0) curve_.push_back({t, planned / n, actual / n});
}

}  // namespace sculpt::compression::prune
