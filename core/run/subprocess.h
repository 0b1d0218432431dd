// Runs a program with its arguments (no shell: nothing in a path or a config value is ever
// interpreted as shell syntax) and captures its standard output and error together.
#pragma once

#include <string>
#include <vector>

namespace sculpt {

struct CommandResult {
  int exit_code = -1;  // -1: it could not be started, or a signal ended it
  std::string output;  // stdout and stderr, interleaved as written
};

// argv[0] is looked up in PATH when it holds no '/'. Throws std::runtime_error when the pipe
// or the process cannot be made.
CommandResult run_command(const std::vector<std::string>& argv);

}  // namespace sculpt
