// sculpt-run with real processes: the variables each worker gets, the log files, a real SIGKILL
// of a worker (the others are stopped, the group restarts), restarts running out, signals to the
// launcher forwarded, --standalone's free port, bad flags; and `sculpt train` as a worker: the
// error file it leaves and a killed run that resumes from its last checkpoint.
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

namespace {
const std::string kRun = SCULPT_RUN_BIN;
const std::string kWorker = SCULPT_LAUNCH_WORKER;
const std::string kSculpt = SCULPT_BIN;

using Env = std::map<std::string, std::string>;

Env read_env(const std::string& path) {
  Env env;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) env[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return env;
}

bool wait_for_file(const std::string& path, std::chrono::seconds limit = 60s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!fs::exists(path)) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

bool alive(pid_t pid) {
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

std::vector<std::string> args(std::initializer_list<std::string> a) {
  return a;
}
}  // namespace

TEST_CASE("parse: torchrun's flags, `--` or the first word as the command", "[launcher]") {
  using sculpt::launch::parse_launch_args;
  auto o = parse_launch_args({"--nproc-per-node", "4", "--nnodes", "2", "--node_rank", "1",
                              "--master-addr", "node0", "--master-port", "1234",
                              "--max-restarts", "3", "--", "prog", "--flag", "x"});
  CHECK(o.nproc_per_node == 4);
  CHECK(o.nnodes == 2);
  CHECK(o.node_rank == 1);
  CHECK(o.master_addr == "node0");
  CHECK(o.master_port == 1234);
  CHECK(o.max_restarts == 3);
  CHECK(o.command == std::vector<std::string>{"prog", "--flag", "x"});
  // torchrun's form without `--`: the command's own flags stay the command's.
  auto p = parse_launch_args({"--nproc_per_node=2", "prog", "--nnodes", "7"});
  CHECK(p.nproc_per_node == 2);
  CHECK(p.nnodes == 1);
  CHECK(p.command == std::vector<std::string>{"prog", "--nnodes", "7"});

  auto env = sculpt::launch::worker_env(o, 3, 2, "/e/f.json");
  Env e(env.begin(), env.end());
  CHECK(e["RANK"] == "7");  // node 1 of 4 workers each, local rank 3
  CHECK(e["LOCAL_RANK"] == "3");
  CHECK(e["WORLD_SIZE"] == "8");
  CHECK(e["LOCAL_WORLD_SIZE"] == "4");
  CHECK(e["GROUP_RANK"] == "1");
  CHECK(e["TORCHELASTIC_RESTART_COUNT"] == "2");
  CHECK(e["TORCHELASTIC_MAX_RESTARTS"] == "3");
  CHECK(e["TORCHELASTIC_ERROR_FILE"] == "/e/f.json");
  CHECK(sculpt::launch::signal_name(SIGKILL) == "SIGKILL");
  CHECK(sculpt::launch::signal_name(SIGTERM) == "SIGTERM");
}

TEST_CASE("bad sculpt-run flags: a clear message and exit 2", "[launcher]") {
  const std::pair<std::string, std::string> cases[] = {
      {"--nproc-per-node 0 -- true", "--nproc-per-node must be at least 1, got 0"},
      {"--nproc-per-node two -- true", "--nproc-per-node"},
      {"--nnodes 2 --node-rank 2 -- true", "--node-rank 2 is outside 0..1"},
      {"--master-port 70000 -- true", "--master-port must be in 1..65535"},
      {"--max-restarts -1 -- true", "--max-restarts must be 0 or more"},
      {"--standalone --nnodes 2 -- true", "--standalone runs one node"},
      {"--standalone --master-port 1234 -- true", "drop --master-addr/--master-port"},
      {"--frobnicate -- true", "--frobnicate"},
      {"--nproc-per-node 2", "no command to run"},
      {"-- /nonexistent/prog", "cannot run '/nonexistent/prog'"},
  };
  for (const auto& [flags, message] : cases) {
    INFO("sculpt-run " << flags);
    auto r = run_process(kRun + " " + flags);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::Contains(message));
  }
  CHECK(run_process(kRun + " --help").exit_code == 0);
}

TEST_CASE("every worker gets torchrun's variables for its rank", "[launcher]") {
  const auto dir = sculpt::test::temp_dir("launch-env");
  // Node 1 of 2 (its workers do not talk to node 0, so it runs alone here).
  auto r = run_process("env -u OMP_NUM_THREADS " + kRun +
                       " --nproc-per-node 3 --nnodes 2 --node-rank 1 --master-addr 10.1.2.3"
                       " --master-port 12345 --max-restarts 2 --rdzv-id job7 -- " +
                       kWorker + " " + dir);
  REQUIRE(r.exit_code == 0);
  std::set<std::string> pids, error_files;
  for (int local = 0; local < 3; ++local) {
    const int rank = 3 + local;
    INFO("rank " << rank);
    auto e = read_env(dir + "/env." + std::to_string(rank) + ".0");
    CHECK(e["RANK"] == std::to_string(rank));
    CHECK(e["LOCAL_RANK"] == std::to_string(local));
    CHECK(e["WORLD_SIZE"] == "6");
    CHECK(e["LOCAL_WORLD_SIZE"] == "3");
    CHECK(e["GROUP_RANK"] == "1");
    CHECK(e["GROUP_WORLD_SIZE"] == "2");
    CHECK(e["MASTER_ADDR"] == "10.1.2.3");
    CHECK(e["MASTER_PORT"] == "12345");
    CHECK(e["TORCHELASTIC_RESTART_COUNT"] == "0");
    CHECK(e["TORCHELASTIC_MAX_RESTARTS"] == "2");
    CHECK(e["TORCHELASTIC_RUN_ID"] == "job7");
    CHECK(e["OMP_NUM_THREADS"] == "1");  // set when unset and more than one worker
    CHECK(e["PGID"] == e["PID"]);        // its own process group
    CHECK_THAT(e["TORCHELASTIC_ERROR_FILE"],
               Catch::EndsWith("/attempt_0/rank_" + std::to_string(rank) + ".error.json"));
    pids.insert(e["PID"]);
    error_files.insert(e["TORCHELASTIC_ERROR_FILE"]);
  }
  CHECK(pids.size() == 3);
  CHECK(error_files.size() == 3);
  // Without --log-dir every worker writes to the terminal.
  for (int rank = 3; rank < 6; ++rank)
    CHECK_THAT(r.out, Catch::Contains("stdout of rank " + std::to_string(rank) + " attempt 0"));
}

TEST_CASE("with --log-dir, one file per rank, and the terminal shows rank 0", "[launcher]") {
  const auto dir = sculpt::test::temp_dir("launch-logs");
  auto r = run_process(kRun + " --nproc-per-node 2 --log-dir " + dir + "/logs -- " + kWorker +
                       " " + dir);
  REQUIRE(r.exit_code == 0);
  for (int rank = 0; rank < 2; ++rank) {
    const auto log = read_text(dir + "/logs/attempt_0/rank_" + std::to_string(rank) + ".log");
    const auto other = std::to_string(1 - rank);
    CHECK_THAT(log, Catch::Contains("stdout of rank " + std::to_string(rank) + " attempt 0"));
    CHECK_THAT(log, Catch::Contains("stderr of rank " + std::to_string(rank) + " attempt 0"));
    CHECK_THAT(log, !Catch::Contains("of rank " + other));
  }
  CHECK_THAT(r.out, Catch::Contains("stdout of rank 0 attempt 0"));
  CHECK_THAT(r.err, Catch::Contains("stderr of rank 0 attempt 0"));
  CHECK_THAT(r.out + r.err, !Catch::Contains("of rank 1"));
}

TEST_CASE("SIGKILL of one worker stops the others and restarts the group", "[launcher]") {
  const auto dir = sculpt::test::temp_dir("launch-kill");
  // Attempt 0: both workers run until stopped. Attempt 1: both finish at once.
  Launcher run(args({"--nproc-per-node", "2", "--max-restarts", "2", "--grace-period", "20",
                     "--log-dir", dir + "/logs", "--", kWorker, dir, "--linger",
                     "--linger-below", "1"}),
               dir);
  REQUIRE(wait_for_file(dir + "/env.0.0"));
  REQUIRE(wait_for_file(dir + "/env.1.0"));
  const pid_t victim = std::stoi(read_env(dir + "/env.1.0")["PID"]);
  const pid_t survivor = std::stoi(read_env(dir + "/env.0.0")["PID"]);
  REQUIRE(::kill(victim, SIGKILL) == 0);
  CHECK(run.wait() == 0);
  const auto err = run.err();
  INFO(err);
  CHECK_THAT(err, Catch::Contains("rank 1 (local rank 1, pid " + std::to_string(victim) +
                                  ") was killed by SIGKILL"));
  CHECK_THAT(err, Catch::Contains("restarting the group (restart 1 of 2)"));
  CHECK_THAT(err, Catch::Contains("finished after 1 restart(s)"));
  // The survivor got SIGTERM (it wrote term.0.0 and exited) and is gone.
  CHECK(read_text(dir + "/term.0.0") == "SIGTERM\n");
  CHECK_FALSE(alive(survivor));
  // Exactly one restart: attempt 1 ran both ranks with the new count, no attempt 2.
  for (int rank = 0; rank < 2; ++rank) {
    auto e = read_env(dir + "/env." + std::to_string(rank) + ".1");
    CHECK(e["TORCHELASTIC_RESTART_COUNT"] == "1");
    CHECK_FALSE(fs::exists(dir + "/env." + std::to_string(rank) + ".2"));
  }
  CHECK_THAT(read_text(dir + "/logs/attempt_1/rank_1.log"),
             Catch::Contains("stdout of rank 1 attempt 1"));
}

TEST_CASE("restarts run out: a non-zero exit naming the rank and the signal", "[launcher]") {
  const auto dir = sculpt::test::temp_dir("launch-exhaust");
  auto r = run_process(kRun + " --nproc-per-node 2 --max-restarts 2 --grace-period 20 -- " +
                       kWorker + " " + dir + " --die-rank 1 --die-signal 9 --linger");
  INFO(r.err);
  CHECK(r.exit_code == 128 + SIGKILL);
  CHECK_THAT(r.err, Catch::Contains("failed after 2 restart(s): rank 1 (local rank 1, pid"));
  CHECK_THAT(r.err, Catch::Contains("was killed by SIGKILL"));
  for (int restart = 0; restart < 3; ++restart) {
    CHECK(fs::exists(dir + "/env.1." + std::to_string(restart)));
    CHECK(fs::exists(dir + "/term.0." + std::to_string(restart)));  // rank 0 stopped each time
  }
  CHECK_FALSE(fs::exists(dir + "/env.1.3"));
}

TEST_CASE("a worker's exit code and error file reach the final message", "[launcher]") {
  const auto dir = sculpt::test::temp_dir("launch-errfile");
  auto r = run_process(kRun + " --nproc-per-node 2 --log-dir " + dir + "/logs -- " + kWorker +
                       " " + dir + " --die-rank 1 --die-code 3 --error 'boom in the data loader'");
  INFO(r.err);
  CHECK(r.exit_code == 3);
  CHECK_THAT(r.err, Catch::Contains("failed: rank 1 (local rank 1, pid"));
  CHECK_THAT(r.err,
             Catch::Contains("exited with code 3: RuntimeError: boom in the data loader"));
  // Rank 1's output is not on the terminal, but the failure shows its last lines and its log.
  CHECK_THAT(r.err, Catch::Contains("log: " + dir + "/logs/attempt_0/rank_1.log"));
  CHECK_THAT(r.err, Catch::Contains("| stderr of rank 1 attempt 0"));
}

TEST_CASE("SIGTERM to sculpt-run is forwarded and workers exit cleanly", "[launcher]") {
  const auto dir = sculpt::test::temp_dir("launch-term");
  Launcher run(args({"--nproc-per-node", "2", "--max-restarts", "3", "--", kWorker, dir,
                     "--linger"}),
               dir);
  REQUIRE(wait_for_file(dir + "/env.0.0"));
  REQUIRE(wait_for_file(dir + "/env.1.0"));
  REQUIRE(::kill(run.pid, SIGTERM) == 0);
  CHECK(run.wait() == 128 + SIGTERM);
  const auto err = run.err();
  INFO(err);
  CHECK_THAT(err, Catch::Contains("SIGTERM received; forwarding it to the workers"));
  CHECK_THAT(err, Catch::Contains("rank 0 (local rank 0, pid"));
  CHECK_THAT(err, Catch::Contains("rank 1 (local rank 1, pid"));
  CHECK_THAT(err, !Catch::Contains("restarting"));
  for (int rank = 0; rank < 2; ++rank) {
    CHECK(read_text(dir + "/term." + std::to_string(rank) + ".0") == "SIGTERM\n");
    CHECK_FALSE(fs::exists(dir + "/env." + std::to_string(rank) + ".1"));  // no restart
  }
}

TEST_CASE("a worker that ignores SIGTERM gets SIGKILL after the grace period", "[launcher]") {
  const auto dir = sculpt::test::temp_dir("launch-grace");
  Launcher run(args({"--nproc-per-node", "1", "--grace-period", "1", "--", kWorker, dir,
                     "--ignore-term"}),
               dir);
  REQUIRE(wait_for_file(dir + "/env.0.0"));
  const pid_t worker = std::stoi(read_env(dir + "/env.0.0")["PID"]);
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(::kill(run.pid, SIGINT) == 0);
  CHECK(run.wait() == 128 + SIGINT);
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(waited >= 0.9);
  CHECK(waited < 30);
  CHECK_THAT(run.err(), Catch::Contains("still runs 1 s after SIGINT; sending SIGKILL"));
  CHECK_THAT(run.err(), Catch::Contains("was killed by SIGKILL"));
  CHECK_FALSE(alive(worker));
  CHECK_FALSE(fs::exists(dir + "/term.0.0"));
}

TEST_CASE("sculpt-run --standalone gives the workers a free port on 127.0.0.1", "[launcher]") {
  const auto dir = sculpt::test::temp_dir("launch-standalone");
  auto r = run_process(kRun + " --standalone --nproc-per-node 2 -- " + kWorker + " " + dir +
                       " --bind-port --die-rank 1 --die-code 0");  // rank 1: no bind
  REQUIRE(r.exit_code == 0);
  auto e0 = read_env(dir + "/env.0.0");
  auto e1 = read_env(dir + "/env.1.0");
  CHECK(e0["MASTER_ADDR"] == "127.0.0.1");
  CHECK(e0["MASTER_PORT"] == e1["MASTER_PORT"]);
  CHECK(e0["MASTER_PORT"] != "29500");
  CHECK(e0["BIND"] == "ok");  // nothing listened on it: rank 0 could bind it
  CHECK(e0["TORCHELASTIC_RUN_ID"] != "none");
  CHECK(e0["TORCHELASTIC_RUN_ID"] == e1["TORCHELASTIC_RUN_ID"]);
}

// ---------------------------------------------------------------------------------------------
// `sculpt train` as a worker

TEST_CASE("sculpt train leaves its fatal error in TORCHELASTIC_ERROR_FILE", "[launcher]") {
  const auto dir = sculpt::test::temp_dir("launch-sculpt-error");
  const auto cfg = dir + "/bad.yaml";
  sculpt::test::write_text(cfg, "run: {name: r, device: cpu}\nmodel: {name: mlp, hiden: 3}\n");
  auto r = run_process(kRun + " --standalone --nproc-per-node 2 --log-dir " + dir + "/logs -- " +
                       kSculpt + " train " + cfg + " run.output_dir=" + dir + "/run");
  INFO(r.err);
  CHECK(r.exit_code == 2);
  const auto file = dir + "/logs/attempt_0/rank_0.error.json";
  REQUIRE(fs::exists(file));
  const auto j = nlohmann::json::parse(read_text(file));
  const std::string message = j["message"]["message"];
  CHECK_THAT(message, Catch::StartsWith("UserError: "));
  CHECK_THAT(message, Catch::Contains("hiden"));
  const std::string ts = j["message"]["extraInfo"]["timestamp"];  // a string, as torchelastic's
  CHECK(std::abs(std::stoll(ts) - static_cast<long long>(std::time(nullptr))) < 600);
  CHECK_THAT(r.err, Catch::Contains("exited with code 2: UserError: "));
  CHECK_THAT(r.err, Catch::Contains("hiden"));
}

namespace {
std::string train_config(const std::string& dir) {
  const std::string path = dir + "/cfg.yaml";
  sculpt::test::write_text(
      path,
      "run: {name: r, device: cpu, seed: 11}\n"
      "model: {name: mlp, hidden: [64, 64]}\n"
      "data: {name: synthetic_blobs, samples: 16000, features: 32, classes: 6, spread: 4, "
      "batch_size: 32}\n"
      "optimizer: {name: sgd, lr: 0.05, momentum: 0.9}\n"
      "trainer: {epochs: 4, log_every: 1, checkpoint_every: 100, keep_checkpoints: 2}\n");
  return path;
}

size_t logged_steps(const std::string& run_dir) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  size_t n = 0;
  std::string line;
  while (std::getline(in, line)) n += line.find("\"split\":\"train\"") != std::string::npos;
  return n;
}

// Every number in a JSON tree, by path ("final/val/accuracy").
void collect_numbers(const nlohmann::json& j, const std::string& path,
                     std::map<std::string, double>& out) {
  if (j.is_number()) out[path] = j.get<double>();
  if (j.is_object())
    for (const auto& [k, v] : j.items()) collect_numbers(v, path + "/" + k, out);
}

// The two runs took the same number of steps and their final metrics (summary.json's "final":
// loss and accuracies of train, val and test) agree within 1e-5.
void require_same_final_metrics(const std::string& run_a, const std::string& run_b) {
  const auto sa = nlohmann::json::parse(read_text(run_a + "/summary.json"));
  const auto sb = nlohmann::json::parse(read_text(run_b + "/summary.json"));
  CHECK(sb["steps"] == sa["steps"]);
  std::map<std::string, double> a, b;
  collect_numbers(sa["final"], "final", a);
  collect_numbers(sb["final"], "final", b);
  REQUIRE(a.size() >= 6);
  for (const auto& [key, value] : a) {
    INFO(key << ": uninterrupted " << value << ", restarted " << b[key]);
    REQUIRE(b.count(key));
    CHECK(std::abs(b[key] - value) <= 1e-5);
  }
}
}  // namespace

TEST_CASE("a worker killed by SIGKILL mid-run: the group restarts, resumes and matches",
          "[launcher][slow]") {
  // One worker per group here (world size 1): the restart and resume path of the launcher and
  // of `sculpt train`, without DDP.
  const auto dir = sculpt::test::temp_dir("launch-resume");
  const auto cfg = train_config(dir);
  auto plain = run_process(kSculpt + " train " + cfg + " run.output_dir=" + dir +
                           "/a --log-level warn");
  REQUIRE(plain.exit_code == 0);

  Launcher run(args({"--standalone", "--nproc-per-node", "1", "--max-restarts", "1", "--log-dir", dir + "/logs",
                     "--", kSculpt, "train", cfg, "run.output_dir=" + dir + "/b"}),
               dir);
  // Kill the worker (a real SIGKILL) once it is past its first checkpoint (step 100).
  pid_t worker = -1;
  const auto end = std::chrono::steady_clock::now() + 120s;
  while (logged_steps(dir + "/b") < 150 && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(2ms);
  const auto children = read_text("/proc/" + std::to_string(run.pid) + "/task/" +
                                  std::to_string(run.pid) + "/children");
  REQUIRE_FALSE(children.empty());
  worker = std::stoi(children);
  REQUIRE(::kill(worker, SIGKILL) == 0);
  REQUIRE(run.wait(300s) == 0);
  const auto err = run.err();
  INFO(err);
  CHECK_THAT(err, Catch::Contains("was killed by SIGKILL"));
  CHECK_THAT(err, Catch::Contains("finished after 1 restart(s)"));
  // The killed attempt did not finish; the restarted one resumed from a checkpoint.
  const auto first = read_text(dir + "/logs/attempt_0/rank_0.log");
  const auto second = read_text(dir + "/logs/attempt_1/rank_0.log");
  CHECK_THAT(first, !Catch::Contains("done:"));
  CHECK_THAT(second, Catch::Contains("resuming from the last checkpoint of the run"));
  CHECK_THAT(second, Catch::Contains("resumed from " + dir + "/b/checkpoints/step_"));

  require_same_final_metrics(dir + "/a", dir + "/b");
}

TEST_CASE("SIGTERM to sculpt-run: sculpt train workers checkpoint and exit 0", "[launcher]") {
  const auto dir = sculpt::test::temp_dir("launch-train-term");
  const auto cfg = train_config(dir);
  Launcher run(args({"--standalone", "--nproc-per-node", "1", "--max-restarts", "2", "--log-dir", dir + "/logs",
                     "--", kSculpt, "train", cfg, "run.output_dir=" + dir + "/b"}),
               dir);
  const auto end = std::chrono::steady_clock::now() + 120s;
  while (logged_steps(dir + "/b") < 150 && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(2ms);
  REQUIRE(::kill(run.pid, SIGTERM) == 0);
  CHECK(run.wait() == 128 + SIGTERM);
  const auto err = run.err();
  INFO(err);
  CHECK_THAT(err, Catch::Contains("rank 0 (local rank 0, pid"));
  CHECK_THAT(err, Catch::Contains(") exited with code 0"));
  CHECK_FALSE(fs::exists(dir + "/logs/attempt_1"));  // a stop is not a failure: no restart
  const auto log = read_text(dir + "/logs/attempt_0/rank_0.log");
  CHECK_THAT(log, Catch::Contains("stop requested; finishing the step and writing a checkpoint"));
  // The checkpoint is the step it stopped at, before the end (1800 steps).
  const auto latest = read_text(dir + "/b/checkpoints/latest");
  REQUIRE_THAT(latest, Catch::StartsWith("step_"));
  const int step = std::stoi(latest.substr(5));
  CHECK(step >= 150);
  CHECK(step < 1800);
  CHECK_FALSE(fs::exists(dir + "/b/summary.json"));
}

TEST_CASE("torchrun reads the error file sculpt train writes", "[launcher][torchrun]") {
  const std::string python = SCULPT_TEST_PYTHON_EXE;
  const auto torchrun = (fs::path(python).parent_path() / "torchrun").string();
  if (python.empty() || !fs::exists(torchrun)) sculpt::test::skip_test("no torchrun in the venv");
  const auto dir = sculpt::test::temp_dir("launch-torchrun-error");
  const auto cfg = dir + "/bad.yaml";
  sculpt::test::write_text(cfg, "run: {name: r, device: cpu}\nmodel: {name: mlp, hiden: 3}\n");
  auto r = run_process(torchrun + " --standalone --nproc-per-node 1 --no-python " + kSculpt +
                       " train " + cfg + " run.output_dir=" + dir + "/run");
  INFO(r.out << r.err);
  CHECK(r.exit_code != 0);
  // torchrun's "Root Cause" block shows the file's callstack field: our message.
  CHECK_THAT(r.err, Catch::Contains("exitcode  : 2"));
  CHECK_THAT(r.err, Catch::Contains("UserError: " + cfg));
  CHECK_THAT(r.err, Catch::Contains("model.hiden: unknown key"));
}

namespace {
// The pid of the launcher's child whose environment holds RANK=<rank>.
pid_t worker_of_rank(pid_t launcher, int rank) {
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
}  // namespace

TEST_CASE("DDP on 2 Gloo ranks: a SIGKILLed worker, the group restarts, resumes and matches",
          "[launcher][slow]") {
  const auto dir = sculpt::test::temp_dir("launch-ddp-resume");
  const auto cfg = train_config(dir);
  const std::string ddp = "distributed.backend=gloo";
  // The uninterrupted 2-rank run, under sculpt-run too.
  auto plain = run_process("OMP_NUM_THREADS=1 " + kRun + " --standalone --nproc-per-node 2 -- " +
                           kSculpt + " train " + cfg + " " + ddp + " run.output_dir=" + dir +
                           "/a --log-level warn");
  INFO(plain.err);
  REQUIRE(plain.exit_code == 0);

  Launcher run(args({"--standalone", "--nproc-per-node", "2", "--max-restarts", "1",
                     "--grace-period", "20", "--log-dir", dir + "/logs", "--", kSculpt, "train",
                     cfg, ddp, "run.output_dir=" + dir + "/b"}),
               dir);
  // Rank 1 gets a real SIGKILL once rank 0 has logged 150 steps (a checkpoint is at 100).
  const auto end = std::chrono::steady_clock::now() + 180s;
  while (logged_steps(dir + "/b") < 150 && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(2ms);
  const pid_t victim = worker_of_rank(run.pid, 1);
  REQUIRE(victim > 0);
  REQUIRE(::kill(victim, SIGKILL) == 0);
  REQUIRE(run.wait(300s) == 0);
  const auto err = run.err();
  INFO(err);
  CHECK_THAT(err, Catch::Contains("rank 1 (local rank 1, pid " + std::to_string(victim) +
                                  ") was killed by SIGKILL"));
  CHECK_THAT(err, Catch::Contains("restarting the group (restart 1 of 1)"));
  CHECK_THAT(err, Catch::Contains("finished after 1 restart(s)"));
  // Both ranks of attempt 1 resumed from the checkpoint that rank 0 wrote before the kill.
  for (int rank = 0; rank < 2; ++rank) {
    const auto log = read_text(dir + "/logs/attempt_1/rank_" + std::to_string(rank) + ".log");
    INFO("rank " << rank << ":\n" << log);
    CHECK_THAT(log, Catch::Contains("resuming from the last checkpoint of the run"));
    CHECK_THAT(log, Catch::Contains("resumed from " + dir + "/b/checkpoints/step_"));
  }
  CHECK_THAT(read_text(dir + "/logs/attempt_0/rank_0.log"), !Catch::Contains("done:"));

  require_same_final_metrics(dir + "/a", dir + "/b");
}

TEST_CASE("two nodes on one machine: a SIGKILL on node 1 restarts both nodes, which resume",
          "[launcher][slow]") {
  const auto dir = sculpt::test::temp_dir("launch-2nodes");
  const auto cfg = train_config(dir);
  const std::string ddp = "distributed.backend=gloo";
  auto single_node = run_process("OMP_NUM_THREADS=1 " + kRun +
                                 " --standalone --nproc-per-node 2 -- " + kSculpt + " train " +
                                 cfg + " " + ddp + " run.output_dir=" + dir + "/a --log-level warn");
  INFO(single_node.err);
  REQUIRE(single_node.exit_code == 0);
  // Node 0 and node 1, one worker each, meeting at node 0's store (rank 0's TCPStore).
  const auto port = std::to_string(sculpt::launch::free_port());
  std::vector<std::unique_ptr<Launcher>> nodes;
  for (int node = 0; node < 2; ++node) {
    const auto sub = dir + "/node" + std::to_string(node);
    fs::create_directories(sub);
    nodes.push_back(std::make_unique<Launcher>(
        args({"--nnodes", "2", "--node-rank", std::to_string(node), "--nproc-per-node", "1",
              "--master-addr", "127.0.0.1", "--master-port", port, "--max-restarts", "1",
              "--grace-period", "20", "--log-dir", sub + "/logs", "--", kSculpt, "train", cfg,
              ddp, "run.output_dir=" + dir + "/b"}),
        sub));
  }
  // Node 1's worker (rank 1) dies; rank 0 on node 0 then fails on its collective, so both
  // launchers restart their group, and the new groups meet again at node 0's store.
  const auto end = std::chrono::steady_clock::now() + 180s;
  while (logged_steps(dir + "/b") < 150 && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(2ms);
  const pid_t victim = worker_of_rank(nodes[1]->pid, 1);
  REQUIRE(victim > 0);
  REQUIRE(::kill(victim, SIGKILL) == 0);
  for (int node = 0; node < 2; ++node) {
    INFO("node " << node << ": " << nodes[node]->err());
    CHECK(nodes[node]->wait(300s) == 0);
  }
  CHECK_THAT(nodes[1]->err(), Catch::Contains("rank 1 (local rank 0, pid " +
                                              std::to_string(victim) +
                                              ") was killed by SIGKILL on node 1"));
  CHECK_THAT(nodes[0]->err(), Catch::Contains("rank 0 (local rank 0, pid"));
  for (int node = 0; node < 2; ++node) {
    const auto log = read_text(dir + "/node" + std::to_string(node) + "/logs/attempt_1/rank_" +
                               std::to_string(node) + ".log");
    INFO("node " << node << ":\n" << log);
    CHECK_THAT(log, Catch::Contains("[rank " + std::to_string(node) + "] resumed from " + dir +
                                    "/b/checkpoints/step_"));
  }
  require_same_final_metrics(dir + "/a", dir + "/b");
}
