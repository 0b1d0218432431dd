// sculpt-run with real processes: the variables each worker gets, the log files, a real SIGKILL
// of a worker (the others are stopped, the group restarts), restarts running out, signals to the
// launcher forwarded, --standalone's free port, bad flags (a small worker program; `sculpt train`
// as the worker is in test_launcher_train.cpp).
#include <catch2/catch.hpp>

#include "tests/distributed/launcher_harness.h"

using namespace sculpt::test::launch;

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

