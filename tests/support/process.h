// Runs a command line in a shell and captures exit code, stdout and stderr (test helper).
#pragma once

#include <string>

namespace sculpt::test {

struct ProcessResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

ProcessResult run_process(const std::string& command_line);
// A fresh empty directory under the system temp folder.
std::string temp_dir(const std::string& tag);
void write_text(const std::string& path, const std::string& text);
// The whole file ("" when it cannot be read).
std::string read_text(const std::string& path);

}  // namespace sculpt::test

namespace sculpt::test {
// Ends this test process with exit code 77, which ctest reports as skipped (every ctest test
// runs one Catch2 test case in its own process). For tests whose inputs are absent here.
[[noreturn]] void skip_test(const std::string& reason);
}  // namespace sculpt::test
