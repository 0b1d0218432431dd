// The Wilson score interval of a proportion (Wilson 1927): for p = successes / n at confidence
// z (1.96: 95%),
//   center = (p + z^2 / 2n) / (1 + z^2 / n)
//   half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2)
// [center - half, center + half], inside [0, 1] also at p = 0 or 1 (unlike p +- z sqrt(p(1-p)/n)).
// Every Hits@k the generative_retrieval task reports comes with hits@k_n, hits@k_lo, hits@k_hi.
#pragma once

#include <algorithm>
#include <cmath>
#include <utility>

namespace sculpt::tasks {

inline std::pair<double, double> wilson_interval(double p, double n, double z = 1.959963984540054) {
  if (!(n > 0)) return {0.0, 1.0};
  p = std::clamp(p, 0.0, 1.0);
  const double z2 = z * z, denom = 1.0 + z2 / n;
  const double center = (p + z2 / (2.0 * n)) / denom;
  const double half = z / denom * std::sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n));
  return {std::max(0.0, center - half), std::min(1.0, center + half)};
}

}  // namespace sculpt::tasks
