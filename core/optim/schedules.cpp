#include "core/optim/schedules.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace sculpt {

void StepScheduleOptions::visit(config::Visitor& v) {
  v.field("step_size", step_size, "steps between two decays", config::Range::at_least(1));
  v.field("gamma", gamma, "lr multiplier applied at every decay",
          config::Range{0, 1, true, true, true, false});
}

void CosineScheduleOptions::visit(config::Visitor& v) {
  v.field("min_factor", min_factor, "final lr as a fraction of optimizer.lr",
          config::Range::closed(0, 1));
}

void OneCycleOptions::visit(config::Visitor& v) {
  v.field("pct_start", pct_start, "one_cycle: share of the steps rising to optimizer.lr",
          config::Range{0, 1, true, true, true, true});
  v.field("div_factor", div_factor, "one_cycle: start lr = optimizer.lr / div_factor",
          config::Range::at_least(1));
  v.field("final_div_factor", final_div_factor, "one_cycle: final lr = start lr / final_div_factor",
          config::Range::at_least(1));
}

ScheduleRegistry& schedule_registry() {
  static ScheduleRegistry registry("schedulers");
  return registry;
}

double lr_factor(const LrSchedule& s, int64_t warmup, int64_t step, int64_t total) {
  if (step < warmup) return static_cast<double>(step + 1) / static_cast<double>(warmup);
  return s.factor(step - warmup, std::max<int64_t>(1, total - warmup));
}

namespace {

class Constant final : public LrSchedule {
 public:
  double factor(int64_t, int64_t) const override { return 1.0; }
};

class StepDecay final : public LrSchedule {
 public:
  explicit StepDecay(StepScheduleOptions o) : o_(std::move(o)) {}
  double factor(int64_t step, int64_t) const override {
    const int64_t decays = step / o_.step_size;  // floor: the lr drops at multiples of step_size
    return std::pow(o_.gamma, static_cast<double>(decays));
  }

 private:
  StepScheduleOptions o_;
};

class Cosine final : public LrSchedule {
 public:
  explicit Cosine(double min_factor) : min_(min_factor) {}
  double factor(int64_t step, int64_t total) const override {
    double t = std::min(1.0, static_cast<double>(step) / static_cast<double>(total));
    return min_ + (1.0 - min_) * 0.5 * (1.0 + std::cos(M_PI * t));
  }

 private:
  double min_;
};

// Smith & Topin's one-cycle (PyTorch's OneCycleLR with cosine annealing): cosine rise from
// 1/div_factor to 1 over pct_start of the steps, then cosine fall to 1/(div*final_div).
class OneCycle final : public LrSchedule {
 public:
  explicit OneCycle(OneCycleOptions o) : o_(std::move(o)) {}
  double factor(int64_t step, int64_t total) const override {
    const double start = 1.0 / o_.div_factor, end = start / o_.final_div_factor;
    const double up = o_.pct_start * static_cast<double>(total) - 1.0;
    const double t = static_cast<double>(step);
    auto cos_anneal = [](double a, double b, double pct) {
      return b + (a - b) / 2.0 * (1.0 + std::cos(M_PI * std::min(1.0, std::max(0.0, pct))));
    };
    if (t <= up) return cos_anneal(start, 1.0, up > 0 ? t / up : 1.0);
    const double down = static_cast<double>(total) - 1.0 - up;
    return cos_anneal(1.0, end, down > 0 ? (t - up) / down : 1.0);
  }

 private:
  OneCycleOptions o_;
};

template <class T>
T opts(const config::SchedulerConfig& c) {
  return c.options ? dynamic_cast<const T&>(*c.options) : T{};
}

}  // namespace

void register_builtin_schedules(ScheduleRegistry& r) {
  r.add("constant", "constant lr (after the optional warm-up)",
        [](const config::SchedulerConfig&) { return std::make_unique<Constant>(); });
  r.add(
      "step", "lr * gamma^floor(t / step_size)",
      [](const config::SchedulerConfig& c) {
        return std::make_unique<StepDecay>(opts<StepScheduleOptions>(c));
      },
      [] { return std::make_shared<StepScheduleOptions>(); });
  r.add(
      "cosine", "cosine decay from lr to min_factor * lr over the run",
      [](const config::SchedulerConfig& c) {
        return std::make_unique<Cosine>(opts<CosineScheduleOptions>(c).min_factor);
      },
      [] { return std::make_shared<CosineScheduleOptions>(); });
  r.add(
      "one_cycle", "one-cycle: cosine rise to lr over pct_start, then cosine fall (OneCycleLR)",
      [](const config::SchedulerConfig& c) {
        return std::make_unique<OneCycle>(opts<OneCycleOptions>(c));
      },
      [] { return std::make_shared<OneCycleOptions>(); });
}

}  // namespace sculpt
