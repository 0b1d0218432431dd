// Shared by the sculpt-run tests (test_launcher.cpp, test_launcher_train.cpp): the binaries,
// a launcher started in the background with its output in files, and small process helpers.
#pragma once

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <cmath>
#include <ctime>
#include <map>
#include <memory>
#include <set>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "cli/launcher.h"
#include "core/error.h"
#include "tests/support/process.h"

using sculpt::test::read_text;
using sculpt::test::run_process;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace sculpt::test::launch {
inline const std::string kRun = SCULPT_RUN_BIN;
inline const std::string kWorker = SCULPT_LAUNCH_WORKER;
inline const std::string kSculpt = SCULPT_BIN;

using Env = std::map<std::string, std::string>;

inline Env read_env(const std::string& path) {
  Env env;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) env[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return env;
}

inline bool wait_for_file(const std::string& path, std::chrono::seconds limit = 60s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!fs::exists(path)) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

inline bool alive(pid_t pid) {
  return ::kill(pid, 0) == 0;
}

// sculpt-run started in the background, its stdout/stderr going to files.
struct Launcher {
  pid_t pid = -1;
  std::string out_file, err_file;

  Launcher(const std::vector<std::string>& args, const std::string& dir) {
    out_file = dir + "/launcher.out";
    err_file = dir + "/launcher.err";
    std::vector<std::string> argv_s{kRun};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : argv_s) argv.push_back(s.data());
    argv.push_back(nullptr);
    pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      const int out = ::open(out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int err = ::open(err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(out, 1);
      ::dup2(err, 2);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }

  // The exit code (128 + signal when it died by one); kills it and fails after `limit`.
  int wait(std::chrono::seconds limit = 120s) {
    const auto end = std::chrono::steady_clock::now() + limit;
    int status = 0;
    for (;;) {
      const pid_t r = ::waitpid(pid, &status, WNOHANG);
      if (r == pid) break;
      if (std::chrono::steady_clock::now() > end) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        FAIL("sculpt-run did not finish within " << limit.count() << " s; stderr:\n" << err());
      }
      std::this_thread::sleep_for(10ms);
    }
    pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  std::string out() const { return read_text(out_file); }
  std::string err() const { return read_text(err_file); }
  ~Launcher() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

inline std::vector<std::string> args(std::initializer_list<std::string> a) {
  return a;
}
// The pid of the launcher's child whose environment holds RANK=<rank>.
inline pid_t worker_of_rank(pid_t launcher, int rank) {
  std::istringstream children(read_text("/proc/" + std::to_string(launcher) + "/task/" +
                                        std::to_string(launcher) + "/children"));
  pid_t pid;
  while (children >> pid) {
    const auto env = read_text("/proc/" + std::to_string(pid) + "/environ");
    std::istringstream vars(env);
    std::string var;
    while (std::getline(vars, var, '\0'))
      if (var == "RANK=" + std::to_string(rank)) return pid;
  }
  return -1;
}


// Training records in a run's metrics.jsonl so far (log_every: 1: the steps logged).
inline size_t logged_steps(const std::string& run_dir) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  size_t n = 0;
  std::string line;
  while (std::getline(in, line)) n += line.find("\"split\":\"train\"") != std::string::npos;
  return n;
}

}  // namespace sculpt::test::launch
