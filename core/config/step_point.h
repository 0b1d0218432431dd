// A point in training as a config gives it, one type for every option that names a moment
// (a pass's start, a freeze's end, a quantizer's warmup): optimizer steps (500 or "500"), epochs
// ("2e", "1.5e", "3epochs"; scaled by the trainer's steps per epoch and rounded) or a fraction
// of the run (0.5: a number in (0, 1), of the run's total steps).
#pragma once

#include <cstdint>
#include <string>

namespace sculpt::config {

struct StepPoint {
  enum class Unit { steps, epochs, fraction };
  Unit unit = Unit::steps;
  double value = 0;  // steps (a whole number), epochs, or the fraction of the run

  StepPoint() = default;
  StepPoint(int64_t steps) : value(static_cast<double>(steps)) {}  // NOLINT: 500 reads as 500 steps
  // "500", "2e", "1.5epochs", "0.5" (also 500.0 as steps); false, `out` untouched, otherwise.
  static bool parse(const std::string& text, StepPoint& out);
  // Text that parses back to this point: "500", "2e", "0.5".
  std::string str() const;
  // Zero steps, as written: "0" (the "never"/"from the start" of many options).
  bool is_zero() const { return unit == Unit::steps && value == 0; }
  // The optimizer step, for a run of `total_steps` with `steps_per_epoch`; UserError naming
  // `key` when the point needs one of them and it is unknown (0).
  int64_t resolve(int64_t total_steps, int64_t steps_per_epoch, const std::string& key) const;
};

// The forms StepPoint::parse accepts, for error messages.
inline constexpr const char* kStepPointForms =
    "a step count (500), epochs (2e, 1.5e) or a fraction of the run in (0, 1) (0.5)";

}  // namespace sculpt::config
