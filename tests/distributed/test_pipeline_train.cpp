// `sculpt train` under distributed.pipeline, with real processes over Gloo: a 2-stage 1F1B and a
// 4-stage GPipe run equal one process (losses, final metrics, the consolidated weights, a
// pruning pass per stage), 2 stages x 2 replicas equal plain DDP on 2 ranks, bad setups are
// refused with exit code 2, and a stage killed under sculpt-run restarts the group and resumes.
#include "core/io/safetensors.h"
#include "tests/distributed/launcher_harness.h"

using namespace sculpt::test::launch;
using sculpt::test::run_ranks;

namespace {
std::string config(const std::string& dir, const std::string& tag, int64_t batch,
                   const std::string& trainer, const std::string& extra = "") {
  const std::string path = dir + "/" + tag + ".yaml";
  sculpt::test::write_text(
      path, "run: {name: p, device: cpu, seed: 5}\n"
            "model: {name: mlp, hidden: [32, 24, 16]}\n"
            "data: {name: synthetic_blobs, samples: 600, features: 12, classes: 4, spread: 2, "
            "batch_size: " + std::to_string(batch) + "}\n"
            "optimizer: {name: sgd, lr: 0.05, momentum: 0.9}\n"
            "trainer: {" + trainer + ", log_every: 1, tensorboard: false}\n" + extra);
  return path;
}

const std::string kPrune =
    "compression:\n"
    "  - {name: prune, pattern: unstructured, sparsity: 0.5, schedule: agp, start: 4, end: 16, "
    "every: 4}\n";

std::map<int64_t, double> losses(const std::string& run) {
  int repeats = 0;
  auto out = sculpt::test::train_losses(run, &repeats);
  CHECK(repeats == 0);  // one record per step: rank 0 alone writes
  return out;
}

void require_same_losses(const std::string& a, const std::string& b, size_t steps) {
  const auto la = losses(a), lb = losses(b);
  REQUIRE(la.size() == steps);
  REQUIRE(lb.size() == steps);
  for (const auto& [step, loss] : la) {
    INFO("step " << step << ": " << loss << " vs " << lb.at(step));
    CHECK(std::abs(loss - lb.at(step)) <= 1e-5);
  }
}

void require_same_final(const std::string& a, const std::string& b) {
  const auto sa = nlohmann::json::parse(read_text(a + "/summary.json"));
  const auto sb = nlohmann::json::parse(read_text(b + "/summary.json"));
  CHECK(sa["steps"] == sb["steps"]);
  int n = 0;
  for (const auto& split : {"val", "test", "train"})
    for (const auto& [k, v] : sa["final"][split].items()) {
      INFO(split << "." << k);
      REQUIRE(sb["final"][split].contains(k));
      CHECK(std::abs(v.get<double>() - sb["final"][split][k].get<double>()) <= 1e-5);
      ++n;
    }
  CHECK(n >= 4);
  CHECK(sa["model"]["params"] == sb["model"]["params"]);
}

void require_same_weights(const std::string& a, const std::string& b) {
  const auto wa = sculpt::io::load_safetensors(a + "/model.safetensors");
  const auto wb = sculpt::io::load_safetensors(b + "/model.safetensors");
  std::map<std::string, at::Tensor> mb(wb.begin(), wb.end());
  REQUIRE(wa.size() == wb.size());
  for (const auto& [name, t] : wa) {
    INFO(name);
    REQUIRE(mb.count(name));
    REQUIRE(mb[name].sizes() == t.sizes());
    CHECK((mb[name] - t).abs().max().item<double>() <= 1e-5);
  }
}

void require_ok(const std::vector<sculpt::test::ProcessResult>& r) {
  for (size_t k = 0; k < r.size(); ++k) {
    INFO("rank " << k << ": " << r[k].err);
    REQUIRE(r[k].exit_code == 0);
  }
}

std::string sculpt_train(const std::string& cfg, const std::string& out,
                         const std::string& overrides = "") {
  return kSculpt + " train " + cfg + " run.output_dir=" + out + " " + overrides +
         " --log-level warn";
}
// One process and the pipeline (`overrides` on `ranks` processes) train alike: every step's
// loss, the final metrics and the weights agree within 1e-5.
void require_pipeline_equals_single(const std::string& cfg, const std::string& dir,
                                    const std::string& overrides, int ranks, size_t steps) {
  auto single = run_process("OMP_NUM_THREADS=1 " + sculpt_train(cfg, dir + "/single"));
  INFO(single.err);
  REQUIRE(single.exit_code == 0);
  require_ok(run_ranks(sculpt_train(cfg, dir + "/pipe", overrides), ranks));
  require_same_losses(dir + "/single", dir + "/pipe", steps);
  require_same_final(dir + "/single", dir + "/pipe");
  require_same_weights(dir + "/single", dir + "/pipe");
}
}  // namespace

TEST_CASE("pipeline 2 stages, 1F1B: sculpt train equals one process, pruning on each stage",
          "[pipeline][distributed]") {
  const auto dir = sculpt::test::temp_dir("pipe-train-2");
  const auto cfg = config(dir, "cfg", 24, "max_steps: 24, eval_every: 8, checkpoint_every: 8",
                          kPrune);
  // 24 rows in 5 micro-batches: unequal ones (5, 5, 5, 5, 4). The weights file is the whole
  // model, gathered from the stages, pruned as one process prunes.
  require_pipeline_equals_single(cfg, dir,
                                 "distributed.pipeline.stages=2 distributed.pipeline.microbatches=5 "
                                 "distributed.pipeline.schedule=1f1b",
                                 2, 24);

  const auto s = nlohmann::json::parse(read_text(dir + "/pipe/summary.json"));
  CHECK(s["pipeline"]["stages"] == 2);
  const auto& stages = s["pipeline"]["per_stage"];
  REQUIRE(stages.size() == 2);
  const auto stage0 = stages[0]["blocks"], stage1 = stages[1]["blocks"];
  // 1F1B: stage 0 holds at most 2 micro-batches (the stages), the last one 1.
  CHECK(stages[0]["peak_live_microbatches"] == 2);
  CHECK(stages[1]["peak_live_microbatches"] == 1);
  for (const auto& st : stages) {
    CHECK(st["bubble"].get<double>() > 0);
    CHECK(st["bubble"].get<double>() < 1);
  }
  CHECK(stage0.front() == "flatten");
  CHECK(stage1.back() == "head");
  // The prune pass ran on each stage, over that stage's layers only; summaries gathered on rank 0.
  std::set<int> stages_seen;
  for (const auto& p : s["compression"]) {
    CHECK(p["pass"] == "prune");
    stages_seen.insert(p["stage"].get<int>());
  }
  CHECK(stages_seen == std::set<int>{0, 1});
  // Each stage checkpoints its own part: its blocks' tensors only.
  for (int k = 0; k < 2; ++k) {
    const auto ckpt = dir + "/pipe/stage_" + std::to_string(k) + "/checkpoints";
    REQUIRE(fs::exists(ckpt + "/latest"));
    auto latest = read_text(ckpt + "/latest");
    latest = latest.substr(0, latest.find('\n'));
    const auto w = sculpt::io::load_safetensors(ckpt + "/" + latest + "/model.safetensors");
    REQUIRE(!w.empty());
    for (const auto& [name, t] : w) {
      const auto block = name.substr(0, name.find('.'));
      INFO("stage " << k << " holds " << name);
      const bool in_stage0 = std::find(stage0.begin(), stage0.end(), block) != stage0.end();
      CHECK(in_stage0 == (k == 0));
    }
  }
  CHECK_FALSE(fs::exists(dir + "/pipe/checkpoints"));
}

TEST_CASE("pipeline 4 stages, GPipe, cut by block names: equals one process",
          "[pipeline][distributed]") {
  const auto dir = sculpt::test::temp_dir("pipe-train-4");
  const auto cfg = config(dir, "cfg", 16, "max_steps: 12, checkpoint_every: 0");
  require_pipeline_equals_single(cfg, dir,
                                 "distributed.pipeline.stages=4 distributed.pipeline.schedule=gpipe "
                                 "distributed.pipeline.cuts=[hidden0,hidden1,3]",
                                 4, 12);
  const auto s = nlohmann::json::parse(read_text(dir + "/pipe/summary.json"));
  std::vector<std::vector<std::string>> blocks;
  for (const auto& st : s["pipeline"]["per_stage"]) {
    blocks.push_back(st["blocks"].get<std::vector<std::string>>());
    CHECK(st["peak_live_microbatches"] == 4);  // GPipe holds every micro-batch (4 by default)
  }
  CHECK(blocks == std::vector<std::vector<std::string>>{
                      {"flatten"}, {"hidden0"}, {"hidden1"}, {"hidden2", "head"}});
}

TEST_CASE("pipeline 2 x data 2 (4 processes) equals plain DDP on 2 ranks",
          "[pipeline][distributed]") {
  const auto dir = sculpt::test::temp_dir("pipe-train-dp");
  const auto cfg = config(dir, "cfg", 12, "max_steps: 16, checkpoint_every: 0", kPrune);
  require_ok(run_ranks(sculpt_train(cfg, dir + "/ddp", "distributed.backend=gloo"), 2));
  require_ok(run_ranks(sculpt_train(cfg, dir + "/pipe",
                                    "distributed.pipeline.stages=2 distributed.pipeline.balance=time"),
                       4));
  require_same_losses(dir + "/ddp", dir + "/pipe", 16);
  require_same_final(dir + "/ddp", dir + "/pipe");
  require_same_weights(dir + "/ddp", dir + "/pipe");
  const auto s = nlohmann::json::parse(read_text(dir + "/pipe/summary.json"));
  CHECK(s["pipeline"]["replicas"] == 2);
}

TEST_CASE("bad pipeline setups are refused with exit code 2 and a clear message",
          "[pipeline][distributed]") {
  const auto dir = sculpt::test::temp_dir("pipe-train-bad");
  const auto cfg = config(dir, "cfg", 16, "max_steps: 4");
  auto expect_refused = [&](const std::vector<sculpt::test::ProcessResult>& r,
                            const std::string& says) {
    bool said = false;
    for (const auto& p : r) {
      INFO(p.err);
      CHECK(p.exit_code == 2);
      said = said || p.err.find(says) != std::string::npos;
    }
    CHECK(said);
  };
  // One process cannot be two stages.
  expect_refused({run_process(sculpt_train(cfg, dir + "/a", "distributed.pipeline.stages=2"))},
                 "start the run with sculpt-run (or torchrun) --nproc-per-node 2");
  // A world that is not stages x replicas.
  expect_refused(run_ranks(sculpt_train(cfg, dir + "/b", "distributed.pipeline.stages=3"), 2),
                 "the world must be stages x data-parallel replicas");
  // A cut at a block the model does not have: the key and the block are named.
  expect_refused(run_ranks(sculpt_train(cfg, dir + "/c",
                                        "distributed.pipeline.stages=2 "
                                        "distributed.pipeline.cuts=[hidden7]"),
                           2),
                 "hidden7");
  // A pass that reads the whole model's outputs cannot run per stage; the refusal names the
  // piece the pipeline step lacks for it.
  const auto lwf = config(dir, "lwf", 16, "max_steps: 4", "compression:\n  - {name: lwf}\n");
  expect_refused(run_ranks(sculpt_train(lwf, dir + "/d", "distributed.pipeline.stages=2"), 2),
                 "compression pass lwf: it distils the whole model's outputs against its earlier "
                 "self on the raw inputs; missing piece: the pipeline step gives extra_loss "
                 "neither the last stage's outputs");
  // Gradient accumulation is the micro-batches' job under a pipeline (a config error).
  expect_refused({run_process(sculpt_train(cfg, dir + "/e",
                                           "distributed.pipeline.stages=2 "
                                           "trainer.grad_accumulation=2"))},
                 "trainer.grad_accumulation");
}

TEST_CASE("a pipeline stage killed by SIGKILL: sculpt-run restarts the group, it resumes and matches",
          "[pipeline][distributed][slow]") {
  const auto dir = sculpt::test::temp_dir("pipe-train-kill");
  const auto cfg = config(dir, "cfg", 16, "max_steps: 300, checkpoint_every: 50, keep_checkpoints: 2");
  const std::string pipe = "distributed.pipeline.stages=2 distributed.pipeline.microbatches=2";
  auto plain = run_process("OMP_NUM_THREADS=1 " + kRun + " --standalone --nproc-per-node 2 -- " +
                           sculpt_train(cfg, dir + "/a", pipe));
  INFO(plain.err);
  REQUIRE(plain.exit_code == 0);

  Launcher run(args({"--standalone", "--nproc-per-node", "2", "--max-restarts", "1",
                     "--grace-period", "20", "--log-dir", dir + "/logs", "--", kSculpt, "train",
                     cfg, "run.output_dir=" + dir + "/b", "distributed.pipeline.stages=2",
                     "distributed.pipeline.microbatches=2"}),
               dir);
  // Stage 1 (rank 1) gets a real SIGKILL once rank 0 has logged 120 steps (checkpoints at 50, 100).
  const auto end = std::chrono::steady_clock::now() + 180s;
  while (logged_steps(dir + "/b") < 120 && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(2ms);
  const pid_t victim = worker_of_rank(run.pid, 1);
  REQUIRE(victim > 0);
  REQUIRE(::kill(victim, SIGKILL) == 0);
  REQUIRE(run.wait(300s) == 0);
  const auto err = run.err();
  INFO(err);
  CHECK_THAT(err, Catch::Contains("was killed by SIGKILL"));
  CHECK_THAT(err, Catch::Contains("finished after 1 restart(s)"));
  const auto second = read_text(dir + "/logs/attempt_1/rank_1.log");
  CHECK_THAT(second, Catch::Contains("resumed from " + dir + "/b/stage_1/checkpoints/step_"));
  require_same_final(dir + "/a", dir + "/b");
  require_same_weights(dir + "/a", dir + "/b");
}
