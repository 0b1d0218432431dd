// sculpt-run with `sculpt train` as the worker: the error file it leaves, SIGTERM making it
// checkpoint, torchrun reading its error file, and killed runs (1 rank, 2 DDP ranks, 2 nodes) that
// restart, resume from the last checkpoint and match an uninterrupted run.
#include <catch2/catch.hpp>

#include "tests/distributed/launcher_harness.h"

using namespace sculpt::test::launch;

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

TEST_CASE("DDP on 2 Gloo ranks: a rank stopped by SIGSTOP is named within distributed.timeout_s, "
          "and the restarted group matches",
          "[launcher][slow]") {
  const auto dir = sculpt::test::temp_dir("launch-ddp-stop");
  const auto cfg = train_config(dir);
  const std::string ddp = "distributed.backend=gloo distributed.timeout_s=5";
  auto plain = run_process("OMP_NUM_THREADS=1 " + kRun + " --standalone --nproc-per-node 2 -- " +
                           kSculpt + " train " + cfg + " " + ddp + " run.output_dir=" + dir +
                           "/a --log-level warn");
  INFO(plain.err);
  REQUIRE(plain.exit_code == 0);

  Launcher run(args({"--standalone", "--nproc-per-node", "2", "--max-restarts", "1",
                     "--grace-period", "20", "--log-dir", dir + "/logs", "--", kSculpt, "train",
                     cfg, "distributed.backend=gloo", "distributed.timeout_s=5",
                     "run.output_dir=" + dir + "/b"}),
               dir);
  // Rank 1 stops responding (a real SIGSTOP: alive, holding its sockets, running nothing) once
  // rank 0 has logged 150 steps (a checkpoint is at 100).
  const auto end = std::chrono::steady_clock::now() + 180s;
  while (logged_steps(dir + "/b") < 150 && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(2ms);
  const pid_t victim = worker_of_rank(run.pid, 1);
  REQUIRE(victim > 0);
  const auto stopped_at = std::chrono::steady_clock::now();
  REQUIRE(::kill(victim, SIGSTOP) == 0);
  // Rank 0's collective fails within the timeout (plus the 1.5 s heartbeat check), naming rank
  // 1 and the collective; its failure makes sculpt-run stop the group (SIGTERM + SIGCONT) and
  // restart it.
  std::string log0;
  while (std::chrono::steady_clock::now() < stopped_at + 60s) {
    log0 = read_text(dir + "/logs/attempt_0/rank_0.log");
    if (log0.find("stopped responding") != std::string::npos) break;
    std::this_thread::sleep_for(20ms);
  }
  const double failed_after =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - stopped_at).count();
  INFO("rank 0:\n" << log0);
  CHECK_THAT(log0, Catch::Contains("rank 1 stopped responding"));
  CHECK_THAT(log0, Catch::Contains("all_reduce of"));
  CHECK_THAT(log0, Catch::Contains("distributed.timeout_s=5"));
  CHECK(failed_after < 5 + 1.5 + 5);  // the timeout, the heartbeat check, and slack for CI
  REQUIRE(run.wait(300s) == 0);
  const auto err = run.err();
  INFO(err);
  CHECK_THAT(err, Catch::Contains("restarting the group (restart 1 of 1)"));
  CHECK_THAT(err, Catch::Contains("finished after 1 restart(s)"));
  for (int rank = 0; rank < 2; ++rank) {
    const auto log = read_text(dir + "/logs/attempt_1/rank_" + std::to_string(rank) + ".log");
    INFO("rank " << rank << ":\n" << log);
    CHECK_THAT(log, Catch::Contains("resumed from " + dir + "/b/checkpoints/step_"));
  }
  require_same_final_metrics(dir + "/a", dir + "/b");
  CHECK(sculpt::test::tensors_of(dir + "/b/model.safetensors") ==
        sculpt::test::tensors_of(dir + "/a/model.safetensors"));
}

namespace {
// The local addresses ("0100007F:1F90", hex as /proc/net/tcp writes them) of the TCP sockets
// process `pid` listens on, IPv4 and IPv6 ("tcp6 " prefixed).
std::vector<std::string> listening_addresses(pid_t pid) {
  std::set<std::string> inodes;
  const std::string fd_dir = "/proc/" + std::to_string(pid) + "/fd";
  for (const auto& e : fs::directory_iterator(fd_dir)) {
    std::error_code ec;
    const std::string to = fs::read_symlink(e.path(), ec).string();
    if (!ec && to.rfind("socket:[", 0) == 0) inodes.insert(to.substr(8, to.size() - 9));
  }
  std::vector<std::string> out;
  for (const std::string table : {"tcp", "tcp6"}) {
    std::istringstream lines(read_text("/proc/" + std::to_string(pid) + "/net/" + table));
    std::string line;
    std::getline(lines, line);  // the header
    while (std::getline(lines, line)) {
      std::istringstream f(line);
      std::string slot, local, remote, state, queues, timer, retr, uid, timeout, inode;
      f >> slot >> local >> remote >> state >> queues >> timer >> retr >> uid >> timeout >> inode;
      if (state == "0A" && inodes.count(inode)) out.push_back((table == "tcp6" ? "tcp6 " : "") + local);
    }
  }
  return out;
}
}  // namespace

TEST_CASE("security: under --standalone the store and Gloo listen on 127.0.0.1 only",
          "[launcher][security]") {
  const auto dir = sculpt::test::temp_dir("launch-listen");
  const auto cfg = train_config(dir);
  Launcher run(args({"--standalone", "--nproc-per-node", "2", "--log-dir", dir + "/logs", "--",
                     kSculpt, "train", cfg, "distributed.backend=gloo",
                     "run.output_dir=" + dir + "/b"}),
               dir);
  const auto end = std::chrono::steady_clock::now() + 180s;
  while (logged_steps(dir + "/b") < 20 && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(2ms);
  size_t sockets = 0;
  for (int rank = 0; rank < 2; ++rank) {
    const pid_t worker = worker_of_rank(run.pid, rank);
    REQUIRE(worker > 0);
    for (const auto& local : listening_addresses(worker)) {
      INFO("rank " << rank << " listens on " << local);
      CHECK(local.rfind("0100007F:", 0) == 0);  // 127.0.0.1, in /proc's byte order
      ++sockets;
    }
  }
  CHECK(sockets >= 3);  // rank 0's store, and each rank's Gloo pair listener
  REQUIRE(run.wait(300s) == 0);
}
