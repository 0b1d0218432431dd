// Shared by the C++ benchmarks: a median timer.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

namespace sculpt::bench {

// Median over `reps` runs of `iters` calls, in microseconds per call (after a short warm-up).
inline double time_us(const std::function<void()>& fn, int iters, int reps = 7) {
  for (int i = 0; i < iters / 10 + 1; ++i) fn();
  std::vector<double> runs;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) fn();
    runs.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() /
        iters);
  }
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
}

}  // namespace sculpt::bench
