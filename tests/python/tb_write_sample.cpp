// Writes the known event files that tensorboard_readback.py reads back with TensorBoard.
// Usage: tb_write_sample LOG_DIR. Steps 0..9 from one writer; steps 10..14 from a second one
// started in the next second, so that it opens its own file as a resumed run does.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <thread>

#include "core/report/tensorboard.h"

namespace {
void write_steps(const char* log_dir, int64_t first, int64_t last) {
  sculpt::report::EventWriter writer(log_dir);
  for (int64_t step = first; step <= last; ++step) {
    const double wall_time = 1700000000.0 + 0.5 * static_cast<double>(step);
    writer.add_scalar("train/loss", 1.0 / static_cast<double>(step + 1), step, wall_time);
    writer.add_scalar("train/lr", 0.001 * static_cast<double>(step), step, wall_time);
    if (step % 5 == 4) writer.add_scalar("val/accuracy", -0.1 * static_cast<double>(step), step);
  }
  writer.flush();
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s LOG_DIR\n", argv[0]);
    return 2;
  }
  try {
    write_steps(argv[1], 0, 9);
    const double now = sculpt::report::unix_time_now();
    std::this_thread::sleep_for(std::chrono::duration<double>(std::floor(now) + 1.01 - now));
    write_steps(argv[1], 10, 14);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tb_write_sample: %s\n", e.what());
    return 1;
  }
  return 0;
}
