#include "cli/launch_worker.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/launcher.h"

namespace sculpt::launch {

ErrorFile read_error_file(const std::string& path) {
  ErrorFile e;
  std::ifstream in(path);
  if (!in) return e;
  std::stringstream ss;
  ss << in.rdbuf();
  e.present = true;
  auto j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("message")) {
    e.message = "(unreadable error file " + path + ")";
    return e;
  }
  const auto& m = j["message"];
  if (m.is_string()) {
    e.message = m.get<std::string>();
  } else if (m.is_object()) {
    if (m.contains("message") && m["message"].is_string()) e.message = m["message"];
    if (m.contains("extraInfo") && m["extraInfo"].is_object() &&
        m["extraInfo"].contains("timestamp")) {
      const auto& t = m["extraInfo"]["timestamp"];
      if (t.is_string()) e.timestamp = std::atof(t.get<std::string>().c_str());
      else if (t.is_number()) e.timestamp = t.get<double>();
    }
  }
  return e;
}

double wall_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void drain(int& fd, const Worker& w, int tee_fd) {
  if (fd < 0) return;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      write_all(w.log_fd, buf, static_cast<size_t>(n));
      if (w.tee) write_all(tee_fd, buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    ::close(fd);  // EOF or error
    fd = -1;
    return;
  }
}

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

std::string describe_status(const Worker& w) {
  std::ostringstream s;
  s << "rank " << w.rank << " (local rank " << w.local_rank << ", pid " << w.pid << ") ";
  if (WIFSIGNALED(w.status))
    s << "was killed by " << signal_name(WTERMSIG(w.status));
  else
    s << "exited with code " << WEXITSTATUS(w.status);
  return s.str();
}

bool failed(const Worker& w) {
  return !w.running &&
         (WIFSIGNALED(w.status) || (WIFEXITED(w.status) && WEXITSTATUS(w.status) != 0));
}

int exit_code_of(const Worker& w) {
  return WIFSIGNALED(w.status) ? 128 + WTERMSIG(w.status) : WEXITSTATUS(w.status);
}

std::string tail_of(const std::string& path, size_t lines) {
  std::ifstream in(path);
  std::deque<std::string> last;
  std::string line;
  while (std::getline(in, line)) {
    last.push_back(line);
    if (last.size() > lines) last.pop_front();
  }
  std::string out;
  for (const auto& l : last) out += "  | " + l + "\n";
  return out;
}

}  // namespace sculpt::launch
