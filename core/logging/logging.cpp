#include "core/logging/logging.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace sculpt::log {

namespace {
spdlog::level::level_enum to_spd(Level l) {
  switch (l) {
    case Level::trace:
      return spdlog::level::trace;
    case Level::debug:
      return spdlog::level::debug;
    case Level::info:
      return spdlog::level::info;
    case Level::warn:
      return spdlog::level::warn;
    case Level::error:
      return spdlog::level::err;
    case Level::off:
      return spdlog::level::off;
  }
  return spdlog::level::info;
}

std::shared_ptr<spdlog::logger>& logger() {
  static std::shared_ptr<spdlog::logger> instance = [] {
    auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    auto l = std::make_shared<spdlog::logger>("sculpt", console);
    l->set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
    return l;
  }();
  return instance;
}
}  // namespace

Level parse_level(const std::string& name) {
  static const char* const kNames[] = {"trace", "debug", "info", "warn", "error", "off"};
  for (int i = 0; i < 6; ++i)
    if (name == kNames[i]) return static_cast<Level>(i);
  throw UserError("unknown log level '" + name +
                  "'; expected trace, debug, info, warn, error or off");
}

void setup(Level level, int rank) {
  std::string prefix = rank >= 0 ? "[rank " + std::to_string(rank) + "] " : "";
  logger()->set_pattern("[%H:%M:%S.%e] [%^%l%$] " + prefix + "%v");
  set_level(level);
}

void set_level(Level level) {
  logger()->set_level(to_spd(level));
  logger()->flush_on(spdlog::level::trace);
}

bool enabled(Level level) {
  return logger()->should_log(to_spd(level));
}

void write(Level level, const std::string& message) {
  logger()->log(to_spd(level), message);
}

void add_file(const std::string& path) {
  for (const auto& s : logger()->sinks())
    if (auto f = std::dynamic_pointer_cast<spdlog::sinks::basic_file_sink_mt>(s))
      if (f->filename() == path) return;
  auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, /*truncate=*/false);
  file->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
  logger()->sinks().push_back(file);
}

void reset_files() {
  auto& sinks = logger()->sinks();
  sinks.erase(std::remove_if(sinks.begin(), sinks.end(),
                             [](const auto& s) {
                               return std::dynamic_pointer_cast<spdlog::sinks::basic_file_sink_mt>(
                                          s) != nullptr;
                             }),
              sinks.end());
}

}  // namespace sculpt::log
