// sculpt-run's flags (torchrun's names) and what they give each worker.
#include <CLI/CLI.hpp>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <random>
#include <sstream>

#include "cli/launcher.h"
#include "core/error.h"

namespace sculpt::launch {

LaunchOptions parse_launch_args(const std::vector<std::string>& args) {
  LaunchOptions o;
  // Options end at `--`; without one, at the first word that is not an option (torchrun's form
  // `torchrun --nproc-per-node 2 prog args`).
  std::vector<std::string> flags = args;
  auto dashdash = std::find(args.begin(), args.end(), "--");
  const bool explicit_command = dashdash != args.end();
  if (explicit_command) {
    flags.assign(args.begin(), dashdash);
    o.command.assign(dashdash + 1, args.end());
  }

  CLI::App app{
      "Start N copies of a command with torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE, "
      "MASTER_ADDR, ...), watch them, restart the group when one fails.\n"
      "  sculpt-run --nproc-per-node 2 -- sculpt train cfg.yaml",
      "sculpt-run"};
  app.option_defaults()->always_capture_default();
  app.add_option("--nproc-per-node,--nproc_per_node", o.nproc_per_node,
                 "workers on this node")
      ->envname("PET_NPROC_PER_NODE");
  app.add_option("--nnodes", o.nnodes, "nodes in the job (each runs sculpt-run)")
      ->envname("PET_NNODES");
  app.add_option("--node-rank,--node_rank", o.node_rank, "this node's index, 0..nnodes-1")
      ->envname("PET_NODE_RANK");
  auto* addr = app.add_option("--master-addr,--master_addr", o.master_addr,
                              "host of node 0, where rank 0 hosts the store")
                   ->envname("PET_MASTER_ADDR");
  auto* port = app.add_option("--master-port,--master_port", o.master_port,
                              "TCP port of the store on the master host")
                   ->envname("PET_MASTER_PORT");
  app.add_flag("--standalone", o.standalone,
               "single node: store on 127.0.0.1 at a free port, a random run id")
      ->envname("PET_STANDALONE");
  app.add_option("--max-restarts,--max_restarts", o.max_restarts,
                 "restarts of the whole worker group after a failure")
      ->envname("PET_MAX_RESTARTS");
  app.add_option("--log-dir,--log_dir", o.log_dir,
                 "write each worker's output to DIR/attempt_K/rank_R.log; the terminal shows "
                 "local rank 0 and the output of any rank that fails")
      ->envname("PET_LOG_DIR");
  auto* run_id = app.add_option("--rdzv-id,--rdzv_id,--run-id", o.run_id,
                                "job id, passed as TORCHELASTIC_RUN_ID")
                     ->envname("PET_RDZV_ID");
  app.add_option("--grace-period", o.grace_period_s,
                 "seconds between SIGTERM and SIGKILL when stopping workers");
  app.add_option("--monitor-interval,--monitor_interval", o.monitor_interval_s,
                 "seconds between checks of the workers")
      ->envname("PET_MONITOR_INTERVAL");
  bool no_python = false;  // accepted for torchrun compatibility: commands are always exec'd
  app.add_flag("--no-python,--no_python", no_python, "accepted for torchrun compatibility");
  std::vector<std::string> rest;
  if (!explicit_command) {
    app.prefix_command();  // the first non-option word starts the command
  }
  try {
    std::vector<std::string> reversed(flags.rbegin(), flags.rend());
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    throw HelpRequested{app.help()};
  } catch (const CLI::ParseError& e) {
    throw UserError(std::string("sculpt-run: ") + e.what() + " (see sculpt-run --help)");
  }
  if (!explicit_command) o.command = app.remaining();

  auto need = [](bool ok, const std::string& msg) {
    if (!ok) throw UserError("sculpt-run: " + msg + " (see sculpt-run --help)");
  };
  need(!o.command.empty(), "no command to run; give it after `--`, e.g. "
                           "sculpt-run --nproc-per-node 2 -- sculpt train cfg.yaml");
  need(o.nproc_per_node >= 1,
       "--nproc-per-node must be at least 1, got " + std::to_string(o.nproc_per_node));
  need(o.nnodes >= 1, "--nnodes must be at least 1, got " + std::to_string(o.nnodes));
  need(o.node_rank >= 0 && o.node_rank < o.nnodes,
       "--node-rank " + std::to_string(o.node_rank) + " is outside 0.." +
           std::to_string(o.nnodes - 1) + " (--nnodes " + std::to_string(o.nnodes) + ")");
  need(o.master_port >= 1 && o.master_port <= 65535,
       "--master-port must be in 1..65535, got " + std::to_string(o.master_port));
  need(o.max_restarts >= 0,
       "--max-restarts must be 0 or more, got " + std::to_string(o.max_restarts));
  need(o.grace_period_s >= 0, "--grace-period must be 0 or more seconds");
  need(o.monitor_interval_s > 0, "--monitor-interval must be more than 0 seconds");
  need(!o.master_addr.empty(), "--master-addr is empty");
  if (o.standalone) {
    need(o.nnodes == 1, "--standalone runs one node; it cannot be used with --nnodes " +
                            std::to_string(o.nnodes));
    need(port->count() == 0 && addr->count() == 0,
         "--standalone picks its own master address and port; drop --master-addr/--master-port");
    o.master_addr = "127.0.0.1";
    o.master_port = 0;  // chosen at launch
    if (run_id->count() == 0) {
      std::random_device rd;
      std::ostringstream id;
      id << std::hex << rd() << rd();
      o.run_id = id.str();
    }
  }
  return o;
}

std::vector<std::pair<std::string, std::string>> worker_env(const LaunchOptions& o,
                                                            int local_rank, int restart_count,
                                                            const std::string& error_file) {
  const int rank = o.node_rank * o.nproc_per_node + local_rank;
  const int world = o.nnodes * o.nproc_per_node;
  auto s = [](auto v) { return std::to_string(v); };
  return {{"RANK", s(rank)},
          {"LOCAL_RANK", s(local_rank)},
          {"WORLD_SIZE", s(world)},
          {"LOCAL_WORLD_SIZE", s(o.nproc_per_node)},
          {"GROUP_RANK", s(o.node_rank)},
          {"GROUP_WORLD_SIZE", s(o.nnodes)},
          {"ROLE_NAME", "default"},
          {"ROLE_RANK", s(rank)},
          {"ROLE_WORLD_SIZE", s(world)},
          {"MASTER_ADDR", o.master_addr},
          {"MASTER_PORT", s(o.master_port)},
          {"TORCHELASTIC_RESTART_COUNT", s(restart_count)},
          {"TORCHELASTIC_MAX_RESTARTS", s(o.max_restarts)},
          {"TORCHELASTIC_RUN_ID", o.run_id},
          {"TORCHELASTIC_USE_AGENT_STORE", "False"},
          {"TORCHELASTIC_ERROR_FILE", error_file}};
}

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("sculpt-run: socket: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    const std::string err = std::strerror(errno);
    ::close(fd);
    throw std::runtime_error("sculpt-run: cannot find a free port: " + err);
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string signal_name(int sig) {
  static const std::pair<int, const char*> names[] = {
      {SIGHUP, "SIGHUP"},   {SIGINT, "SIGINT"},   {SIGQUIT, "SIGQUIT"}, {SIGILL, "SIGILL"},
      {SIGTRAP, "SIGTRAP"}, {SIGABRT, "SIGABRT"}, {SIGBUS, "SIGBUS"},   {SIGFPE, "SIGFPE"},
      {SIGKILL, "SIGKILL"}, {SIGUSR1, "SIGUSR1"}, {SIGSEGV, "SIGSEGV"}, {SIGUSR2, "SIGUSR2"},
      {SIGPIPE, "SIGPIPE"}, {SIGALRM, "SIGALRM"}, {SIGTERM, "SIGTERM"}, {SIGXCPU, "SIGXCPU"}};
  for (const auto& [n, name] : names)
    if (n == sig) return name;
  return "signal " + std::to_string(sig);
}

}  // namespace sculpt::launch
