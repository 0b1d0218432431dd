// `sculpt-run`: a launcher with torchrun's interface (static rendezvous and --standalone). It
// starts --nproc-per-node workers (fork + exec, each in its own process group), gives each the
// variables torchrun gives (RANK, LOCAL_RANK, WORLD_SIZE, ..., TORCHELASTIC_ERROR_FILE), watches
// them, stops and restarts the whole local group when one fails (up to --max-restarts),
// forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT, and ends with an exit code and a message naming the
// failed rank. No torch here: the launcher never initialises CUDA and starts in milliseconds.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace sculpt::launch {

struct LaunchOptions {
  int nproc_per_node = 1;
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool standalone = false;  // single node, master 127.0.0.1 on a free port, a random run id
  int max_restarts = 0;
  std::string log_dir;      // "" = workers write to the terminal
  std::string run_id = "none";
  double grace_period_s = 30;    // SIGTERM, then SIGKILL after this many seconds
  double monitor_interval_s = 0.1;
  std::vector<std::string> command;
};

// Parses the launcher's arguments (without argv[0]): options, then `--` (or the first word
// that is not an option) and the command. Throws UserError with a clear message on bad flags.
// `--help` throws HelpRequested carrying the help text.
LaunchOptions parse_launch_args(const std::vector<std::string>& args);

struct HelpRequested {
  std::string text;
};

// The variables one worker gets on top of the launcher's environment (pure; for tests too).
// `master_port` is the resolved port (--standalone's free one).
std::vector<std::pair<std::string, std::string>> worker_env(const LaunchOptions& opt,
                                                            int local_rank, int restart_count,
                                                            const std::string& error_file);

// A TCP port on 127.0.0.1 that nothing listens on right now (bind to port 0, read it back).
int free_port();

// "SIGKILL" for 9, "signal 42" for a number without a name.
std::string signal_name(int sig);

// Runs the workers to the end; returns the launcher's exit code: 0 when every worker of the
// last attempt exited 0; the failed worker's exit code, or 128 + its signal; 128 + the signal
// the launcher received when it was told to stop.
int launch(const LaunchOptions& opt);

// main() of sculpt-run: parse, launch, map errors (bad flags -> 2). Never throws.
int run_launcher(int argc, char** argv);

}  // namespace sculpt::launch
