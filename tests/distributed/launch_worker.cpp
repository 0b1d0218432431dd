// A tiny worker for the launcher's tests (no torch). It records what the launcher gave it in
// OUT/env.<RANK>.<RESTART> and, by flags, fails, lingers until SIGTERM, or ignores SIGTERM and
// SIGINT.
//   launch_worker OUT [--die-rank R [--die-signal S | --die-code C] [--error MSG]
//                 [--die-below N]] [--linger [--linger-below N] | --ignore-term] [--bind-port]
// --die-below/--linger-below N: only while TORCHELASTIC_RESTART_COUNT < N (default: always).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <string>
#include <thread>

namespace {
volatile std::sig_atomic_t g_term = 0;
void on_term(int) {
  g_term = 1;
}

int env_int(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : -1;
}

std::string env_str(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "<unset>";
}

// Binds MASTER_PORT on all interfaces: proves it was free when the launcher chose it.
bool bind_master_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  a.sin_port = htons(static_cast<uint16_t>(env_int("MASTER_PORT")));
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && ::listen(fd, 1) == 0;
  ::close(fd);
  return ok;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return 64;
  const std::string out = argv[1];
  int die_rank = -1, die_signal = 0, die_code = 1, die_below = 1 << 30, linger_below = 1 << 30;
  bool linger = false, ignore_term = false, bind_port = false;
  std::string error;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return std::string(i + 1 < argc ? argv[++i] : ""); };
    if (a == "--die-rank") die_rank = std::stoi(next());
    else if (a == "--die-signal") die_signal = std::stoi(next());
    else if (a == "--die-code") die_code = std::stoi(next());
    else if (a == "--die-below") die_below = std::stoi(next());
    else if (a == "--error") error = next();
    else if (a == "--linger") linger = true;
    else if (a == "--linger-below") linger_below = std::stoi(next());
    else if (a == "--ignore-term") ignore_term = true;
    else if (a == "--bind-port") bind_port = true;
    else return 64;
  }
  std::signal(SIGTERM, ignore_term ? SIG_IGN : on_term);
  if (ignore_term) std::signal(SIGINT, SIG_IGN);
  const int rank = env_int("RANK"), restart = env_int("TORCHELASTIC_RESTART_COUNT");
  const std::string tag = std::to_string(rank) + "." + std::to_string(restart);
  {
    std::ofstream env(out + "/env." + tag + ".tmp");
    for (const char* k :
         {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
          "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_MAX_RESTARTS",
          "TORCHELASTIC_RUN_ID", "TORCHELASTIC_ERROR_FILE", "OMP_NUM_THREADS"})
      env << k << "=" << env_str(k) << "\n";
    env << "PID=" << ::getpid() << "\nPPID=" << ::getppid() << "\nPGID=" << ::getpgrp() << "\n";
    if (bind_port) env << "BIND=" << (bind_master_port() ? "ok" : "failed") << "\n";
  }
  // Complete files only: the tests poll for them.
  std::rename((out + "/env." + tag + ".tmp").c_str(), (out + "/env." + tag).c_str());
  std::printf("stdout of rank %d attempt %d\n", rank, restart);
  std::fflush(stdout);
  std::fprintf(stderr, "stderr of rank %d attempt %d\n", rank, restart);

  if (rank == die_rank && restart < die_below) {
    if (!error.empty()) {
      std::ofstream ef(env_str("TORCHELASTIC_ERROR_FILE"));
      ef << R"({"message": {"message": "RuntimeError: )" << error
         << R"(", "extraInfo": {"py_callstack": "none", "timestamp": ")" << std::time(nullptr)
         << R"("}}})" << "\n";
    }
    if (die_signal) ::kill(::getpid(), die_signal);
    return die_code;
  }
  if ((linger && restart < linger_below) || ignore_term) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!g_term && std::chrono::steady_clock::now() < end)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!g_term) return 3;  // nobody stopped us: a test failure, visible as exit 3
    std::ofstream(out + "/term." + tag) << "SIGTERM\n";
    return 0;
  }
  return 0;
}
