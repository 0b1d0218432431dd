#include "tests/support/process.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace sculpt::test {

namespace {
std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}
}  // namespace

std::string temp_dir(const std::string& tag) {
  static std::atomic<int> counter{0};
  auto dir =
      std::filesystem::temp_directory_path() /
      ("sculpt-test-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

std::string read_text(const std::string& path) {
  return slurp(path);
}

std::map<int64_t, double> train_losses(const std::string& run_dir, int* repeats) {
  std::map<int64_t, double> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::string line;
  if (repeats) *repeats = 0;
  while (std::getline(in, line)) {
    // A last line without its newline is still being written (a test polling a live run).
    if (in.eof()) break;
    const auto j = nlohmann::json::parse(line);
    if (j["split"] != "train") continue;
    const auto step = j["step"].get<int64_t>();
    if (repeats && out.count(step)) ++*repeats;
    out[step] = j["loss"].get<double>();
  }
  return out;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

ProcessResult run_process(const std::string& command_line) {
  std::string dir = temp_dir("proc");
  std::string out = dir + "/out", err = dir + "/err";
  int status = std::system((command_line + " >" + out + " 2>" + err).c_str());
  ProcessResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out);
  r.err = slurp(err);
  std::filesystem::remove_all(dir);
  return r;
}

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  close(fd);
  return ok ? ntohs(a.sin_port) : 29500;
}

std::vector<ProcessResult> run_ranks(const std::string& command, int world,
                                     const std::vector<std::string>& per_rank) {
  const std::string port = std::to_string(free_port()), size = std::to_string(world);
  std::vector<ProcessResult> results(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      const std::string rank = std::to_string(r);
      const std::string env = "OMP_NUM_THREADS=1 RANK=" + rank + " LOCAL_RANK=" + rank +
                              " WORLD_SIZE=" + size + " LOCAL_WORLD_SIZE=" + size +
                              " MASTER_ADDR=127.0.0.1 MASTER_PORT=" + port;
      const std::string extra = per_rank.empty() ? "" : " " + per_rank[static_cast<size_t>(r)];
      results[static_cast<size_t>(r)] = run_process(env + " timeout 120 " + command + extra);
    });
  for (auto& t : threads) t.join();
  return results;
}

}  // namespace sculpt::test

namespace sculpt::test {
void skip_test(const std::string& reason) {
  std::printf("SKIPPED: %s\n", reason.c_str());
  std::fflush(stdout);
  std::_Exit(77);
}
std::string tensors_of(const std::string& safetensors_file) {
  const std::string all = read_text(safetensors_file);
  uint64_t n = 0;
  if (all.size() >= 8)
    for (int i = 7; i >= 0; --i)
      n = (n << 8) | static_cast<unsigned char>(all[static_cast<size_t>(i)]);
  if (all.size() < 8 || n > all.size() - 8)
    throw std::runtime_error(safetensors_file + ": not a safetensors file");
  auto header = nlohmann::json::parse(all.substr(8, n));
  header.erase("__metadata__");
  return header.dump() + all.substr(8 + n);
}

}  // namespace sculpt::test
