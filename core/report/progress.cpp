#include "core/report/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "core/logging/logging.h"

namespace sculpt::report {

ProgressBar::ProgressBar(int64_t total_steps, int64_t first_step)
    : total_(total_steps),
      first_(first_step),
      active_(::isatty(2) == 1 && log::enabled(log::Level::info)),
      t0_(std::chrono::steady_clock::now()) {}

ProgressBar::~ProgressBar() {
  if (drawn_) std::fputc('\n', stderr);
}

void ProgressBar::update(int64_t step, double loss, double samples_per_s) {
  if (!active_) return;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && step != total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  const double elapsed = std::chrono::duration<double>(now - t0_).count();
  const double done = static_cast<double>(step - first_);
  const double eta = done > 0 ? elapsed / done * static_cast<double>(total_ - step) : 0.0;
  const int width = 24;
  const int filled = total_ > 0 ? static_cast<int>(width * step / total_) : width;
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(width, '.');
  std::fprintf(stderr, "\r\033[K%lld/%lld [%s] loss %.4g  %.0f samples/s  ETA %.0fs",
               static_cast<long long>(step), static_cast<long long>(total_), bar.c_str(), loss,
               samples_per_s, std::isfinite(eta) ? eta : 0.0);
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::clear() {
  if (!drawn_) return;
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
}

}  // namespace sculpt::report
