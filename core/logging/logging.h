// Logging: spdlog underneath, behind this small wall. LibTorch ships its own fmt (12.x) in its
// include folder, and Debian's spdlog is built against fmt 9, so no file that sees torch headers
// may include spdlog; logging.cpp is compiled without them (core/CMakeLists.txt).
// Console (stderr) plus an optional log file; a "[rank r]" prefix once the run is distributed.
#pragma once

#include <string>

#include "core/error.h"

namespace sculpt::log {

enum class Level { trace, debug, info, warn, error, off };

// Level names as in `logging.level`: trace, debug, info, warn, error, off. UserError otherwise.
Level parse_level(const std::string& name);
void setup(Level level, int rank = -1);
void set_level(Level level);
bool enabled(Level level);
void write(Level level, const std::string& message);
// Adds a file sink (the run's log.txt), idempotent per path; reset() drops file sinks.
void add_file(const std::string& path);
void reset_files();

template <class... Parts>
void info(const Parts&... parts) {
  if (enabled(Level::info)) write(Level::info, detail::concat(parts...));
}
template <class... Parts>
void warn(const Parts&... parts) {
  if (enabled(Level::warn)) write(Level::warn, detail::concat(parts...));
}
template <class... Parts>
void error(const Parts&... parts) {
  if (enabled(Level::error)) write(Level::error, detail::concat(parts...));
}
template <class... Parts>
void debug(const Parts&... parts) {
  if (enabled(Level::debug)) write(Level::debug, detail::concat(parts...));
}

}  // namespace sculpt::log
