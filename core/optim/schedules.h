// Learning-rate schedules as closed forms of the step: lr(t) = optimizer.lr * factor(t), with
// a linear warm-up over scheduler.warmup_steps applied on top of every schedule.
#pragma once

#include <cstdint>
#include <memory>

#include "core/config/config.h"
#include "core/registry/registry.h"

namespace sculpt {

class LrSchedule {
 public:
  virtual ~LrSchedule() = default;
  // Multiplier of the base lr at optimizer step `step` (0-based) of `total` steps, after warm-up.
  virtual double factor(int64_t step, int64_t total) const = 0;
};

using ScheduleRegistry = Registry<LrSchedule, const config::SchedulerConfig&>;
ScheduleRegistry& schedule_registry();
void register_builtin_schedules(ScheduleRegistry& r);

// factor(step) with warm-up: (step + 1) / warmup for step < warmup, then the schedule, whose
// own clock starts after the warm-up.
double lr_factor(const LrSchedule& s, int64_t warmup, int64_t step, int64_t total);

struct StepScheduleOptions : config::Section {
  int64_t step_size = 1000;  // steps between decays, >= 1
  double gamma = 0.1;        // multiplier at each decay, in (0, 1]
  void visit(config::Visitor& v) override;
};

struct CosineScheduleOptions : config::Section {
  double min_factor = 0.0;  // lr at the end as a fraction of optimizer.lr, in [0, 1]
  void visit(config::Visitor& v) override;
};

struct OneCycleOptions : config::Section {
  double pct_start = 0.3;         // share of the steps spent rising to optimizer.lr, in (0, 1)
  double div_factor = 25.0;       // the start lr is optimizer.lr / div_factor, >= 1
  double final_div_factor = 1e4;  // the final lr is start lr / final_div_factor, >= 1
  void visit(config::Visitor& v) override;
};

}  // namespace sculpt
