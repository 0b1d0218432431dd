#include "core/config/step_point.h"

#include <cmath>
#include <regex>

#include "core/config/visitors.h"
#include "core/error.h"

namespace sculpt::config {

namespace {
// "<digits>" steps, "<number>" (a fraction, or a whole number of steps) or "<number>e" epochs.
const std::regex& step_point_re() {
  static const std::regex re(
      R"(^\s*([0-9]+)\s*$|^\s*([0-9]*\.?[0-9]+)\s*$|^\s*([0-9]*\.?[0-9]+)\s*e(p|pochs?)?\s*$)");
  return re;
}
}  // namespace

bool StepPoint::parse(const std::string& text, StepPoint& out) {
  std::smatch m;
  if (!std::regex_match(text, m, step_point_re())) return false;
  StepPoint p;
  if (m[1].matched) {
    p.value = static_cast<double>(std::stoll(m[1].str()));
  } else if (m[2].matched) {
    p.value = std::stod(m[2].str());
    if (p.value > 0 && p.value < 1)
      p.unit = Unit::fraction;
    else if (p.value != std::floor(p.value))
      return false;  // 1.5: neither a step count nor a fraction
  } else {
    p.unit = Unit::epochs;
    p.value = std::stod(m[3].str());
  }
  out = p;
  return true;
}

std::string StepPoint::str() const {
  switch (unit) {
    case Unit::steps: return std::to_string(static_cast<int64_t>(value));
    case Unit::epochs: return format_double(value) + "e";
    case Unit::fraction: return format_double(value);
  }
  return {};
}

int64_t StepPoint::resolve(int64_t total_steps, int64_t steps_per_epoch,
                           const std::string& key) const {
  switch (unit) {
    case Unit::steps: return static_cast<int64_t>(value);
    case Unit::epochs:
      SCULPT_CHECK(steps_per_epoch > 0, key, ": '", str(),
                   "' is given in epochs but the trainer did not say how many steps an epoch has");
      return std::llround(value * static_cast<double>(steps_per_epoch));
    case Unit::fraction:
      SCULPT_CHECK(total_steps > 0, key, ": '", str(),
                   "' is a fraction of the run but the run's length is not known");
      return std::llround(value * static_cast<double>(total_steps));
  }
  return 0;
}

}  // namespace sculpt::config
