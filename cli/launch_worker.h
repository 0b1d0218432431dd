// sculpt-run's worker processes as the launcher sees them: their pids, pipes, log files and
// exit status, and the error file a failed worker leaves (torchelastic's JSON shape).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>

namespace sculpt::launch {

// What a worker wrote to TORCHELASTIC_ERROR_FILE.
struct ErrorFile {
  bool present = false;
  std::string message;
  double timestamp = 0;
};
ErrorFile read_error_file(const std::string& path);

struct Worker {
  int local_rank = 0;
  int rank = 0;
  pid_t pid = -1;
  bool running = false;
  int status = 0;  // waitpid status once reaped
  bool stopped_by_us = false;
  double failed_at = 0;  // wall seconds when the failure was seen
  std::string error_file;
  std::string log_path;
  int log_fd = -1;
  int out_fd = -1;  // pipes from the worker's stdout/stderr (only with --log-dir)
  int err_fd = -1;
  bool tee = false;  // also copy to the launcher's stdout/stderr
};

double wall_now();  // seconds since the epoch
void write_all(int fd, const char* p, size_t n);
// Moves whatever a pipe holds into the log file (and the terminal); closes it at EOF.
void drain(int& fd, const Worker& w, int tee_fd);
void close_fd(int& fd);
// "rank 1 (local rank 1, pid 123) was killed by SIGKILL" / "... exited with code 3".
std::string describe_status(const Worker& w);
bool failed(const Worker& w);
int exit_code_of(const Worker& w);  // 128 + signal for a killed worker
// The last `lines` lines of a file, each indented "  | ".
std::string tail_of(const std::string& path, size_t lines);

}  // namespace sculpt::launch
