// Progress of a run on the terminal: on a TTY one line redrawn in place (step, bar, loss,
// rate, ETA); otherwise nothing here — the periodic log lines are the progress.
#pragma once

#include <chrono>
#include <cstdint>

namespace sculpt::report {

class ProgressBar {
 public:
  // Active only when stderr is a terminal and the log level shows info.
  ProgressBar(int64_t total_steps, int64_t first_step);
  ~ProgressBar();
  void update(int64_t step, double loss, double samples_per_s);
  void clear();  // erase the line before something else prints
  bool active() const { return active_; }

 private:
  int64_t total_, first_;
  bool active_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point t0_, last_draw_;
};

}  // namespace sculpt::report
