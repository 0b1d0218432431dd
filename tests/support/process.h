// Runs a command line in a shell and captures exit code, stdout and stderr (test helper).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sculpt::test {

struct ProcessResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

ProcessResult run_process(const std::string& command_line);
// A TCP port on 127.0.0.1 that was free a moment ago.
int free_port();
// `command` (plus " " + per_rank[r], when given) started as ranks 0..world-1 at once with
// torchrun's variables (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT on a free port) and OMP_NUM_THREADS=1, each under a 120 s limit.
std::vector<ProcessResult> run_ranks(const std::string& command, int world = 2,
                                     const std::vector<std::string>& per_rank = {});
// A fresh empty directory under the system temp folder.
std::string temp_dir(const std::string& tag);
void write_text(const std::string& path, const std::string& text);
// The whole file ("" when it cannot be read).
std::string read_text(const std::string& path);
// Training loss per step from a run's metrics.jsonl (log_every: 1); a step logged twice (a
// resumed run repeats steps after its checkpoint) keeps its last value and counts in
// `repeats` when given. A last line without its newline (a live run writing it) is skipped.
std::map<int64_t, double> train_losses(const std::string& run_dir, int* repeats = nullptr);
// A safetensors file's tensor index and bytes without its `__metadata__` (which holds the
// config's hash, and two runs' output folders differ): equal strings mean bit-identical
// weights. Throws std::runtime_error when the file is not a safetensors file.
std::string tensors_of(const std::string& safetensors_file);

}  // namespace sculpt::test

namespace sculpt::test {
// Ends this test process with exit code 77, which ctest reports as skipped (every ctest test
// runs one Catch2 test case in its own process). For tests whose inputs are absent here.
[[noreturn]] void skip_test(const std::string& reason);
}  // namespace sculpt::test
