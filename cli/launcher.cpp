// sculpt-run: start the workers, watch them, restart or stop the group (flags: launch_options.cpp).
#include "cli/launcher.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/launch_worker.h"
#include "core/error.h"

extern char** environ;

namespace sculpt::launch {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Signals received by the launcher: remembered here, forwarded by the monitor loop.

namespace {

volatile std::sig_atomic_t g_signal = 0;

void on_signal(int sig) {
  g_signal = sig;
}

constexpr int kForwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

void install_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: poll() returns at once with EINTR
  for (int sig : kForwarded) sigaction(sig, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a closed terminal must not kill the launcher
}

using Clock = std::chrono::steady_clock;

class Group {
 public:
  Group(const LaunchOptions& o, std::string work_dir) : o_(o), work_dir_(std::move(work_dir)) {}

  // Starts every local worker of attempt `restart`. Throws UserError when the command cannot
  // be executed at all (no point in restarting).
  void start(int restart) {
    const fs::path dir = fs::path(work_dir_) / ("attempt_" + std::to_string(restart));
    fs::create_directories(dir);
    workers_.assign(static_cast<size_t>(o_.nproc_per_node), Worker{});
    for (int l = 0; l < o_.nproc_per_node; ++l) {
      Worker& w = workers_[static_cast<size_t>(l)];
      w.local_rank = l;
      w.rank = o_.node_rank * o_.nproc_per_node + l;
      w.error_file = (dir / ("rank_" + std::to_string(w.rank) + ".error.json")).string();
      fs::remove(w.error_file);
      w.tee = l == 0;
      if (!o_.log_dir.empty()) {
        w.log_path = (dir / ("rank_" + std::to_string(w.rank) + ".log")).string();
        w.log_fd = ::open(w.log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (w.log_fd < 0)
          throw UserError("sculpt-run: cannot write " + w.log_path + ": " + std::strerror(errno));
      }
      spawn(w, restart);
    }
  }

  // Polls the pipes (or sleeps) for up to `seconds`, then reaps exited workers.
  void pump(double seconds) {
    std::vector<pollfd> fds;
    std::vector<std::pair<Worker*, int*>> owners;
    for (auto& w : workers_)
      for (int* fd : {&w.out_fd, &w.err_fd})
        if (*fd >= 0) {
          fds.push_back({*fd, POLLIN, 0});
          owners.emplace_back(&w, fd);
        }
    const int ms = static_cast<int>(seconds * 1000);
    if (fds.empty()) {
      if (g_signal == 0) ::poll(nullptr, 0, ms);
    } else if (g_signal == 0 && ::poll(fds.data(), fds.size(), ms) > 0) {
      for (size_t i = 0; i < fds.size(); ++i)
        if (fds[i].revents) {
          auto [w, fd] = owners[i];
          drain(*fd, *w, fd == &w->out_fd ? STDOUT_FILENO : STDERR_FILENO);
        }
    }
    reap();
  }

  void reap() {
    for (auto& w : workers_) {
      if (!w.running) continue;
      int status = 0;
      const pid_t r = ::waitpid(w.pid, &status, WNOHANG);
      if (r == w.pid) finish(w, status);
    }
  }

  bool any_running() const {
    for (const auto& w : workers_)
      if (w.running) return true;
    return false;
  }

  // The failure that explains the others: a worker dead by a signal it was not sent by us
  // (peers of a killed rank then fail on their collectives), then the earliest error file.
  const Worker* root_failure() const {
    const Worker* best = nullptr;
    double best_t = 0;
    for (const auto& w : workers_) {
      if (!failed(w) || w.stopped_by_us) continue;
      const double t = WIFSIGNALED(w.status) ? 0 : first_seen(w);
      if (!best || t < best_t) {
        best = &w;
        best_t = t;
      }
    }
    return best;
  }

  // SIGTERM (or `sig`) to every running worker, SIGKILL to those still alive after the grace
  // period; drains their output meanwhile. A signal to the launcher while waiting is forwarded.
  // SIGCONT follows the signal, so that a stopped worker (SIGSTOP, a debugger let go) acts on it.
  void stop(int sig) {
    signal_running(sig, true);
    signal_running(SIGCONT, true);
    const auto deadline =
        Clock::now() + std::chrono::duration_cast<Clock::duration>(
                           std::chrono::duration<double>(o_.grace_period_s));
    while (any_running() && Clock::now() < deadline) {
      if (g_signal) {
        interrupted_ = g_signal;
        signal_running(g_signal, true);
        g_signal = 0;
      }
      pump(0.05);
    }
    if (any_running()) {
      for (const auto& w : workers_)
        if (w.running)
          std::cerr << "sculpt-run: rank " << w.rank << " (pid " << w.pid << ") still runs "
                    << o_.grace_period_s << " s after " << signal_name(sig) << "; sending SIGKILL\n";
      signal_running(SIGKILL, true);
      for (auto& w : workers_)
        if (w.running) {
          int status = 0;
          while (::waitpid(w.pid, &status, 0) < 0 && errno == EINTR) {
          }
          finish(w, status);
        }
    }
    close_all();
  }

  // Forwards `sig` to every running worker (its whole process group).
  void signal_running(int sig, bool by_us) {
    for (auto& w : workers_)
      if (w.running) {
        if (::kill(-w.pid, sig) != 0) ::kill(w.pid, sig);
        w.stopped_by_us = w.stopped_by_us || by_us;
      }
  }

  void close_all() {
    for (auto& w : workers_) {
      drain(w.out_fd, w, STDOUT_FILENO);
      drain(w.err_fd, w, STDERR_FILENO);
      close_fd(w.out_fd);
      close_fd(w.err_fd);
      close_fd(w.log_fd);
    }
  }

  const std::vector<Worker>& workers() const { return workers_; }
  // A signal the launcher received while stopping the group (0: none).
  int interrupted() const { return interrupted_; }

 private:
  double first_seen(const Worker& w) const {
    const auto e = read_error_file(w.error_file);
    return e.present && e.timestamp > 0 ? e.timestamp : w.failed_at;
  }

  void finish(Worker& w, int status) {
    w.running = false;
    w.status = status;
    w.failed_at = wall_now();
    drain(w.out_fd, w, STDOUT_FILENO);  // what it wrote before exiting
    drain(w.err_fd, w, STDERR_FILENO);
  }

  void spawn(Worker& w, int restart) {
    // Everything the child needs is built before fork(): after it, only async-signal-safe calls.
    std::vector<std::string> env_strings;
    const auto vars = worker_env(o_, w.local_rank, restart, w.error_file);
    for (char** e = environ; *e; ++e) {
      const std::string kv = *e;
      const auto name = kv.substr(0, kv.find('='));
      bool overridden = false;
      for (const auto& [k, v] : vars) overridden = overridden || k == name;
      if (!overridden) env_strings.push_back(kv);
    }
    for (const auto& [k, v] : vars) env_strings.push_back(k + "=" + v);
    if (o_.nproc_per_node > 1 && !std::getenv("OMP_NUM_THREADS"))
      env_strings.emplace_back("OMP_NUM_THREADS=1");  // as torchrun: N workers share the cores
    if (!std::getenv("TORCH_NCCL_ASYNC_ERROR_HANDLING"))
      env_strings.emplace_back("TORCH_NCCL_ASYNC_ERROR_HANDLING=1");
    std::vector<char*> envp, argv;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<std::string> cmd = o_.command;
    for (auto& s : cmd) argv.push_back(s.data());
    argv.push_back(nullptr);

    int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1}, exec_pipe[2] = {-1, -1};
    auto check = [](int rc, const char* what) {
      if (rc != 0) throw std::runtime_error(std::string("sculpt-run: ") + what + ": " +
                                            std::strerror(errno));
    };
    if (w.log_fd >= 0) {
      check(::pipe2(out_pipe, O_CLOEXEC), "pipe");
      check(::pipe2(err_pipe, O_CLOEXEC), "pipe");
    }
    check(::pipe2(exec_pipe, O_CLOEXEC), "pipe");  // closes on a successful exec
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) check(-1, "fork");
    if (pid == 0) {
      // Child: own process group (a Ctrl-C at the terminal reaches the launcher only, which
      // forwards it once), die with the launcher, default signal dispositions, then exec.
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(1);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT}) ::signal(sig, SIG_DFL);
      const int null_fd = ::open("/dev/null", O_RDONLY);
      if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
      if (out_pipe[1] >= 0) ::dup2(out_pipe[1], STDOUT_FILENO);
      if (err_pipe[1] >= 0) ::dup2(err_pipe[1], STDERR_FILENO);
      ::execvpe(argv[0], argv.data(), envp.data());
      const int err = errno;
      write_all(exec_pipe[1], reinterpret_cast<const char*>(&err), sizeof err);
      ::_exit(127);
    }
    ::setpgid(pid, pid);  // also from the parent, so a signal right after fork reaches it
    close_fd(out_pipe[1]);
    close_fd(err_pipe[1]);
    close_fd(exec_pipe[1]);
    int err = 0;
    ssize_t n;
    while ((n = ::read(exec_pipe[0], &err, sizeof err)) < 0 && errno == EINTR) {
    }
    close_fd(exec_pipe[0]);
    w.pid = pid;
    w.running = true;
    w.out_fd = out_pipe[0];
    w.err_fd = err_pipe[0];
    for (int fd : {w.out_fd, w.err_fd})
      if (fd >= 0) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    if (n == static_cast<ssize_t>(sizeof err)) {
      int status = 0;
      ::waitpid(pid, &status, 0);
      w.running = false;
      w.status = status;
      stop(SIGTERM);  // the ones started before it
      throw UserError("sculpt-run: cannot run '" + o_.command[0] + "': " + std::strerror(err));
    }
  }

  const LaunchOptions& o_;
  std::string work_dir_;
  std::vector<Worker> workers_;
  int interrupted_ = 0;
};

// Where error files (and, with --log-dir, logs) go: the log dir, or a temporary folder.
struct WorkDir {
  std::string path;
  bool temporary = false;
  explicit WorkDir(const std::string& log_dir) {
    if (!log_dir.empty()) {
      path = log_dir;
      std::error_code ec;
      fs::create_directories(path, ec);
      if (ec) throw UserError("sculpt-run: --log-dir " + log_dir + ": " + ec.message());
      return;
    }
    std::string tmpl = (fs::temp_directory_path() / "sculpt-run-XXXXXX").string();
    if (!::mkdtemp(tmpl.data()))
      throw std::runtime_error("sculpt-run: cannot create a temporary folder: " +
                               std::string(std::strerror(errno)));
    path = tmpl;
    temporary = true;
  }
  ~WorkDir() {
    std::error_code ec;
    if (temporary) fs::remove_all(path, ec);
  }
};

std::string failure_report(const Worker& w, const LaunchOptions& o) {
  std::ostringstream s;
  s << describe_status(w);
  if (o.nnodes > 1) s << " on node " << o.node_rank;
  const auto e = read_error_file(w.error_file);
  if (e.present) s << ": " << e.message;
  s << "\n";
  if (!w.log_path.empty()) {
    s << "  log: " << w.log_path << "\n";
    const auto t = tail_of(w.log_path, 20);
    if (!t.empty() && !w.tee) s << "  last lines:\n" << t;
  }
  return s.str();
}

}  // namespace

int launch(const LaunchOptions& opt_in) {
  LaunchOptions o = opt_in;
  if (o.standalone) o.master_port = free_port();
  g_signal = 0;
  install_handlers();
  WorkDir work(o.log_dir);
  Group group(o, work.path);
  const int world = o.nnodes * o.nproc_per_node;
  std::cerr << "sculpt-run: " << o.nproc_per_node << " worker(s) on node " << o.node_rank << " of "
            << o.nnodes << " (world size " << world << "), master " << o.master_addr << ":"
            << o.master_port << ", max restarts " << o.max_restarts
            << (o.log_dir.empty() ? "" : ", logs in " + o.log_dir) << "\n";
  for (int restart = 0;; ++restart) {
    group.start(restart);
    const Worker* failure = nullptr;
    while (group.any_running()) {
      group.pump(o.monitor_interval_s);
      if (g_signal) {
        const int sig = g_signal;
        g_signal = 0;
        std::cerr << "sculpt-run: " << signal_name(sig)
                  << " received; forwarding it to the workers (they stop at a checkpoint)\n";
        group.stop(sig);
        std::string how;
        for (const auto& w : group.workers()) how += "\n  " + describe_status(w);
        std::cerr << "sculpt-run: stopped by " << signal_name(sig) << ":" << how << "\n";
        return 128 + sig;
      }
      for (const auto& w : group.workers())
        if (failed(w)) failure = &w;
      if (failure) break;
    }
    if (!failure) {
      group.close_all();
      std::cerr << "sculpt-run: all " << o.nproc_per_node << " worker(s) finished"
                << (restart ? " after " + std::to_string(restart) + " restart(s)" : "") << "\n";
      return 0;
    }
    group.reap();  // peers that failed in the same instant count as first failures too
    const Worker* root = group.root_failure();
    const std::string report = failure_report(*root, o);
    group.stop(SIGTERM);
    if (group.interrupted()) {
      std::cerr << "sculpt-run: " << report << "sculpt-run: stopped by "
                << signal_name(group.interrupted()) << " while stopping the group; no restart\n";
      return 128 + group.interrupted();
    }
    if (restart < o.max_restarts) {
      std::cerr << "sculpt-run: " << report << "sculpt-run: restarting the group (restart "
                << restart + 1 << " of " << o.max_restarts << ")\n";
      continue;
    }
    std::cerr << "sculpt-run: failed"
              << (o.max_restarts ? " after " + std::to_string(restart) + " restart(s)" : "")
              << ": " << report;
    return exit_code_of(*root);
  }
}

int run_launcher(int argc, char** argv) {
  try {
    const auto opt = parse_launch_args(std::vector<std::string>(argv + 1, argv + argc));
    return launch(opt);
  } catch (const HelpRequested& h) {
    std::cout << h.text;
    return 0;
  } catch (const UserError& e) {
    std::cerr << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "sculpt-run: failed: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace sculpt::launch
