#include "cli/elastic.h"

#include <cstdlib>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/config/config.h"
#include "core/io/atomic_file.h"
#include "core/logging/logging.h"

namespace sculpt::cli {

void write_elastic_error(const std::string& type, const std::string& what) {
  const char* path = std::getenv("TORCHELASTIC_ERROR_FILE");
  if (!path || !*path) return;
  const nlohmann::json j = {
      {"message",
       {{"message", type + ": " + what},
        {"extraInfo",
         {{"py_callstack", "(sculpt, C++: no Python stack) " + type + ": " + what},
          {"timestamp", std::to_string(static_cast<long long>(std::time(nullptr)))}}}}}};
  try {
    io::write_file_atomic(path, j.dump(2) + "\n");
  } catch (const std::exception& e) {
    std::cerr << "sculpt: could not write TORCHELASTIC_ERROR_FILE: " << e.what() << "\n";
  }
}

void resume_after_restart(config::Config& cfg) {
  const char* count = std::getenv("TORCHELASTIC_RESTART_COUNT");
  if (!count || std::atoi(count) <= 0) return;
  if (!cfg.run.resume.empty()) {
    log::info("restart ", count, " of the worker group; run.resume=", cfg.run.resume,
              " as configured");
    return;
  }
  cfg.run.resume = "auto";
  log::info("restart ", count,
            " of the worker group (TORCHELASTIC_RESTART_COUNT): resuming from the last "
            "checkpoint of the run (run.resume=auto)");
}

}  // namespace sculpt::cli
