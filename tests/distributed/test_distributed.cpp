// Data-parallel training on real c10d: every test starts two real processes (Gloo on CPU, a
// TCPStore rendezvous on a free port) the way torchrun starts them (RANK, WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT), and checks results against one process: DDP gradients against
// full-batch gradients, 2-rank `sculpt train` losses against a 1-rank run with twice the batch.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "cli/app.h"
#include "core/data/loader.h"
#include "core/data/dataset.h"
#include "core/config/config.h"
#include "tests/support/process.h"

using sculpt::test::ProcessResult;
using sculpt::test::free_port;
using sculpt::test::run_process;
using sculpt::test::run_ranks;
namespace fs = std::filesystem;

namespace {
const std::string kSculpt = SCULPT_BIN;
const std::string kWorker = SCULPT_DDP_WORKER;

double max_diff(const std::string& out) {
  auto at = out.find("max_diff ");
  REQUIRE(at != std::string::npos);
  return std::stod(out.substr(at + 9));
}

std::map<int64_t, double> losses(const std::string& run) {
  std::map<int64_t, double> out;
  std::ifstream in(run + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j["split"] == "train") {
      const auto step = j["step"].get<int64_t>();
      REQUIRE(out.count(step) == 0);  // one record per step: rank 0 alone writes
      out[step] = j["loss"].get<double>();
    }
  }
  return out;
}

// An mlp on blobs for 20 steps, a checkpoint every 10; `extra`: more YAML lines.
std::string train_config(const std::string& dir, int64_t batch, const std::string& extra = "",
                         const std::string& tag = "") {
  const std::string path = dir + "/cfg" + std::to_string(batch) + tag + ".yaml";
  sculpt::test::write_text(
      path, "run: {name: d, device: cpu, seed: 3}\n"
            "model: {name: mlp, hidden: [64]}\n"
            "data: {name: synthetic_blobs, samples: 1000, features: 16, classes: 4, spread: 2, "
            "batch_size: " + std::to_string(batch) + "}\n"
            "optimizer: {name: sgd, lr: 0.05, momentum: 0.9}\n"
            "trainer: {max_steps: 20, log_every: 1, checkpoint_every: 10, tensorboard: false}\n" +
            extra);
  return path;
}

void require_same_losses(const std::map<int64_t, double>& a, const std::map<int64_t, double>& b,
                         double tol) {
  REQUIRE(a.size() == 20);
  REQUIRE(b.size() == 20);
  for (const auto& [step, loss] : a) {
    INFO("step " << step);
    CHECK(std::abs(loss - b.at(step)) <= tol);
  }
}
}  // namespace

TEST_CASE("collectives: sum, mean, max, broadcast and all_gather across 2 Gloo processes",
          "[distributed]") {
  auto r = run_ranks(kWorker + " agree");
  for (int k = 0; k < 2; ++k) {
    INFO(r[k].out << r[k].err);
    REQUIRE(r[k].exit_code == 0);
    CHECK(r[k].out.find("sum 3 mean 1.5 max 10 bcast 6 gather r0,r1") != std::string::npos);
  }
}

TEST_CASE("DDP gradients equal single-process full-batch gradients within 1e-6",
          "[distributed]") {
  for (const std::string variant : {"sync", "accumulate", "unused"}) {
    auto r = run_ranks(kWorker + " grads " + variant);
    for (int k = 0; k < 2; ++k) {
      INFO(variant << " rank " << k << ": " << r[k].out << r[k].err);
      REQUIRE(r[k].exit_code == 0);
      CHECK(r[k].out.find("buckets 1\n") == std::string::npos);  // several buckets
      CHECK(max_diff(r[k].out) <= 1e-6);
    }
  }
  // bf16 compression: the gradients travel in 8 significant bits.
  auto r = run_ranks(kWorker + " grads bf16");
  INFO(r[0].out << r[0].err);
  REQUIRE(r[0].exit_code == 0);
  CHECK(max_diff(r[0].out) > 0);
  CHECK(max_diff(r[0].out) < 5e-3);
}

TEST_CASE("DDP gradients are bucket views, and 20 steps of 2 accumulated micro-batches equal one "
          "process within 1e-5",
          "[distributed]") {
  // keep: zero_grad zeroes in place, the views survive and only the first step copies (its
  // gradients did not exist yet); none: zero_grad drops them and every step copies each
  // gradient once into its bucket, as PyTorch's DDP does after set_to_none.
  for (const std::string variant : {"keep", "none"}) {
    auto r = run_ranks(kWorker + " views " + variant);
    for (int k = 0; k < 2; ++k) {
      INFO(variant << " rank " << k << ": " << r[k].out << r[k].err);
      REQUIRE(r[k].exit_code == 0);
      CHECK(max_diff(r[k].out) <= 1e-5);
      CHECK(r[k].out.find("outside 0 copies " + std::string(variant == "keep" ? "6" : "120") +
                          " params 6\n") != std::string::npos);
    }
  }
}

TEST_CASE("sharded evaluation: each rank evaluates half the rows, the metrics equal one process",
          "[distributed]") {
  // 203 rows (odd: shards of 102 and 101); gr: seq2seq decoding (exact match, hits@k, mrr).
  for (const std::string variant : {"blobs", "gr"}) {
    auto r = run_ranks(kWorker + " eval " + variant);
    int64_t rows = 0, total = 0;
    for (int k = 0; k < 2; ++k) {
      INFO(variant << " rank " << k << ": " << r[k].out << r[k].err);
      REQUIRE(r[k].exit_code == 0);
      CHECK(max_diff(r[k].out) <= 1e-6);
      long long mine = 0, all = 0;
      REQUIRE(std::sscanf(r[k].out.c_str(), "rows %lld of %lld", &mine, &all) == 2);
      CHECK(mine == (all + 1 - k) / 2);
      rows += mine;
      total = all;
    }
    CHECK(rows == total);
  }
}

TEST_CASE("a collective timeout is an error naming the rank and the operation, not a hang",
          "[distributed]") {
  const auto t0 = std::chrono::steady_clock::now();
  auto r = run_ranks(kWorker + " timeout");
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO(r[0].out << r[0].err);
  REQUIRE(r[0].exit_code == 3);
  CHECK(r[0].out.find("rank 0 of 2: all_reduce of the test tensor failed") != std::string::npos);
  CHECK(r[0].out.find("distributed.timeout_s=2") != std::string::npos);
  CHECK(s < 60);
}

TEST_CASE("distributed.verify_state: ranks holding other weights fail, naming rank and tensors",
          "[distributed]") {
  auto same = run_ranks(kWorker + " verify same");
  for (int k = 0; k < 2; ++k) {
    INFO(same[k].out << same[k].err);
    CHECK(same[k].exit_code == 0);
  }
  auto differ = run_ranks(kWorker + " verify differ");
  for (int k = 0; k < 2; ++k) {
    INFO(differ[k].out << differ[k].err);
    CHECK(differ[k].exit_code == 3);
    CHECK(differ[k].out.find("the ranks disagree after training; rank 1: ") != std::string::npos);
    CHECK(differ[k].out.find("differ from rank 0 (model ") != std::string::npos);
  }
}

TEST_CASE("ranks started with different configs are refused, naming the differing rank",
          "[distributed]") {
  const auto dir = sculpt::test::temp_dir("ddp-mismatch");
  const auto cfg = train_config(dir, 16);
  auto r = run_ranks(kSculpt + " train " + cfg + " run.output_dir=" + dir + "/run", 2,
                     {"optimizer.lr=0.05", "optimizer.lr=0.01"});
  for (int k = 0; k < 2; ++k) {
    INFO(r[k].err);
    CHECK(r[k].exit_code == 2);
    CHECK(r[k].err.find("rank(s) 1 differ from rank 0") != std::string::npos);
  }
  CHECK(!fs::exists(dir + "/run/metrics.jsonl"));
}

TEST_CASE("2-rank sculpt train matches 1 rank with twice the batch: 20 losses within 1e-5",
          "[distributed]") {
  const auto dir = sculpt::test::temp_dir("ddp-train");
  auto single = run_process("OMP_NUM_THREADS=1 " + kSculpt + " train " + train_config(dir, 32) +
                            " run.output_dir=" + dir + "/single");
  INFO(single.err);
  REQUIRE(single.exit_code == 0);
  auto r = run_ranks(kSculpt + " train " + train_config(dir, 16) + " run.output_dir=" + dir +
                     "/ddp");
  for (int k = 0; k < 2; ++k) {
    INFO("rank " << k << ": " << r[k].err);
    REQUIRE(r[k].exit_code == 0);
  }
  require_same_losses(losses(dir + "/single"), losses(dir + "/ddp"), 1e-5);
  // Rank-aware files: rank 1 logs to its own file with its rank in the console prefix; rank 0
  // alone writes checkpoints, metrics, summary and the model.
  CHECK(r[1].err.find("[rank 1]") != std::string::npos);
  CHECK(fs::exists(dir + "/ddp/log.rank1.txt"));
  CHECK(fs::exists(dir + "/ddp/summary.json"));
  CHECK(fs::exists(dir + "/ddp/checkpoints"));
  auto summary = nlohmann::json::parse(sculpt::test::read_text(dir + "/ddp/summary.json"));
  CHECK(summary["steps"] == 20);
}

TEST_CASE("2-rank sculpt train with grad accumulation 2 matches 1 rank (also with freeze and "
          "prune), and its sharded val metrics equal sculpt eval of its weights",
          "[distributed]") {
  const auto dir = sculpt::test::temp_dir("ddp-accumulate");
  const std::string accumulate = "trainer.grad_accumulation=2";
  auto single = run_process("OMP_NUM_THREADS=1 " + kSculpt + " train " + train_config(dir, 32) +
                            " run.output_dir=" + dir + "/single " + accumulate);
  INFO(single.err);
  REQUIRE(single.exit_code == 0);
  const auto cfg = train_config(dir, 16);
  auto r = run_ranks(kSculpt + " train " + cfg + " run.output_dir=" + dir + "/ddp " + accumulate);
  for (int k = 0; k < 2; ++k) {
    INFO("rank " << k << ": " << r[k].err);
    REQUIRE(r[k].exit_code == 0);
  }
  require_same_losses(losses(dir + "/single"), losses(dir + "/ddp"), 1e-5);
  // The final val metrics of the 2-rank run (each rank half the val rows, sums added) against
  // one process evaluating the saved weights on all of them.
  auto summary = nlohmann::json::parse(sculpt::test::read_text(dir + "/ddp/summary.json"));
  auto eval = run_process("OMP_NUM_THREADS=1 " + kSculpt + " eval " + cfg + " --weights " + dir +
                          "/ddp/model.safetensors");
  INFO(eval.out << eval.err);
  REQUIRE(eval.exit_code == 0);
  const auto one = nlohmann::json::parse(eval.out)["val"];
  const auto two = summary["final"]["val"];
  REQUIRE(one.size() >= 2);
  REQUIRE(two.size() == one.size());
  for (const auto& [k, v] : one.items()) {
    INFO(k);
    CHECK(std::abs(two[k].get<double>() - v.get<double>()) <= 1e-6);
  }
  // Passes that act on .grad after backward (freeze drops it, Taylor pruning reads it, masks
  // multiply it) see the same gradients in the bucket views.
  const std::string recipe =
      "compression: [{name: freeze, include: ['hidden0.*'], unfreeze_at: 6}, {name: prune, "
      "schedule: agp, sparsity: 0.5, start: 2, end: 12, every: 2, scorer: taylor}]\n";
  auto single_p = run_process("OMP_NUM_THREADS=1 " + kSculpt + " train " +
                              train_config(dir, 32, recipe, "p") + " run.output_dir=" + dir +
                              "/single_p " + accumulate);
  INFO(single_p.err);
  REQUIRE(single_p.exit_code == 0);
  auto rp = run_ranks(kSculpt + " train " + train_config(dir, 16, recipe, "p") +
                      " run.output_dir=" + dir + "/ddp_p " + accumulate);
  for (int k = 0; k < 2; ++k) {
    INFO("passes, rank " << k << ": " << rp[k].err);
    REQUIRE(rp[k].exit_code == 0);
  }
  require_same_losses(losses(dir + "/single_p"), losses(dir + "/ddp_p"), 1e-5);
}

TEST_CASE("incremental trainer: 2-rank runs continue on 1 rank (run.resume inside an increment, "
          "incremental.resume_from)",
          "[distributed]") {
  const auto dir = sculpt::test::temp_dir("ddp-incremental");
  const std::string cfg = dir + "/inc.yaml";
  sculpt::test::write_text(
      cfg, "run: {name: inc, device: cpu, seed: 3}\n"
           "model: {name: mlp, hidden: [32]}\n"
           "data: {name: synthetic_blobs, samples: 800, features: 8, classes: 4, spread: 2, "
           "batch_size: 16, val_fraction: 0.2}\n"
           "optimizer: {name: sgd, lr: 0.05, momentum: 0.9}\n"
           "trainer: {name: incremental, epochs: 1, log_every: 1, checkpoint_every: 5, "
           "keep_checkpoints: 100, tensorboard: false}\n"
           "incremental: {eval_on: val}\n"
           "increments: [{classes: [0, 1]}, {classes: [2, 3]}]\n");
  auto two = run_ranks(kSculpt + " train " + cfg + " run.output_dir=" + dir + "/two");
  for (int k = 0; k < 2; ++k) {
    INFO("rank " << k << ": " << two[k].err);
    REQUIRE(two[k].exit_code == 0);
  }
  // Increment 0: 322 train rows, 161 per rank, 11 steps of 16; step_15 lies 4 steps (4 batches
  // of each rank's shard: 128 samples) into increment 1.
  const auto ckpt = dir + "/two/checkpoints/step_15";
  REQUIRE(fs::exists(ckpt));
  auto inc = nlohmann::json::parse(sculpt::test::read_text(ckpt + "/incremental.json"));
  REQUIRE(inc["begin_step"] == 11);
  auto one = run_process("OMP_NUM_THREADS=1 " + kSculpt + " train " + cfg + " run.output_dir=" +
                         dir + "/one run.resume=" + ckpt);
  INFO(one.err);
  REQUIRE(one.exit_code == 0);
  CHECK(one.err.find("written by 2 rank(s), this run has 1: epoch 0 continues after 128 "
                     "samples (batch 8") != std::string::npos);
  // One rank reads 16 rows a step: increment 1 continues after its step 8 (global 19) and ends
  // with its 319 rows, 20 steps (global 31).
  const auto resumed = losses(dir + "/one");
  REQUIRE(!resumed.empty());
  CHECK(resumed.begin()->first == 20);
  CHECK(resumed.rbegin()->first == 31);
  CHECK(resumed.size() == 12);
  auto summary = nlohmann::json::parse(sculpt::test::read_text(dir + "/one/summary.json"));
  CHECK(summary["steps"] == 31);
  CHECK(summary["continual"]["accuracy_matrix"][1][1].get<double>() > 0.5);

  // incremental.resume_from: a finished 2-rank run over increment 0 continued by one process.
  std::string text = sculpt::test::read_text(cfg);
  const std::string both = "increments: [{classes: [0, 1]}, {classes: [2, 3]}]\n";
  const std::string first_cfg = dir + "/first.yaml";
  sculpt::test::write_text(first_cfg, text.substr(0, text.find(both)) +
                                          "increments: [{classes: [0, 1]}]\n");
  auto first = run_ranks(kSculpt + " train " + first_cfg + " run.output_dir=" + dir + "/first");
  REQUIRE(first[0].exit_code == 0);
  auto cont = run_process("OMP_NUM_THREADS=1 " + kSculpt + " train " + cfg + " run.output_dir=" +
                          dir + "/cont incremental.resume_from=" + dir + "/first");
  INFO(cont.err);
  REQUIRE(cont.exit_code == 0);
  CHECK(cont.err.find("continuing " + dir + "/first after 1 increments") != std::string::npos);
  auto a = nlohmann::json::parse(sculpt::test::read_text(dir + "/first/summary.json"));
  auto b = nlohmann::json::parse(sculpt::test::read_text(dir + "/cont/summary.json"));
  CHECK(b["steps"] == 31);  // 11 steps on 2 ranks, then 20 on one
  CHECK(b["continual"]["accuracy_matrix"][0][0] == a["continual"]["accuracy_matrix"][0][0]);
}

TEST_CASE("EWC under DDP: the Fisher and the pass state agree on both ranks across increments",
          "[distributed]") {
  const auto dir = sculpt::test::temp_dir("ddp-ewc");
  const std::string cfg = dir + "/ewc.yaml";
  sculpt::test::write_text(
      cfg, "run: {name: ewc, device: cpu, seed: 3}\n"
           "model: {name: mlp, hidden: [32]}\n"
           "data: {name: synthetic_blobs, samples: 400, features: 8, classes: 4, spread: 2, "
           "batch_size: 16}\n"
           "trainer: {name: incremental, epochs: 1, tensorboard: false}\n"
           "increments: [{classes: [0, 1]}, {classes: [2, 3]}]\n"
           "compression: [{name: ewc, lambda: 5, mode: separate, samples: 32}]\n");
  auto r = run_ranks(kSculpt + " train " + cfg + " run.output_dir=" + dir + "/run");
  for (int k = 0; k < 2; ++k) {
    INFO("rank " << k << ": " << r[k].err);
    REQUIRE(r[k].exit_code == 0);
    // The state holds the Fisher time too: the slowest rank's, the same everywhere.
    CHECK(r[k].err.find("all 2 ranks agree on") != std::string::npos);
  }
}

TEST_CASE("prune masks and quantize observer ranges agree on both ranks after training",
          "[distributed]") {
  // RigL regrows by each rank's own dense gradient and activation observers see each rank's own
  // batch: without the mask broadcast and the range all-reduce the ranks would part ways.
  // distributed.verify_state compares weights and pass state bit for bit at the end.
  const auto dir = sculpt::test::temp_dir("ddp-passes");
  int n = 0;
  for (const std::string recipe :
       {"[{name: prune, schedule: rigl, sparsity: 0.7, start: 0, end: 16, every: 4}]",
        "[{name: quantize, act_bits: 8, act_observer: moving_average}]",
        "[{name: quantize, act_bits: 8, act_observer: percentile}]"}) {
    const auto tag = std::to_string(n++);
    const auto cfg = train_config(dir, 16, "compression: " + recipe + "\n", tag);
    auto r = run_ranks(kSculpt + " train " + cfg + " run.output_dir=" + dir + "/p" + tag);
    for (int k = 0; k < 2; ++k) {
      INFO(recipe << " rank " << k << ": " << r[k].err);
      REQUIRE(r[k].exit_code == 0);
      CHECK(r[k].err.find("all 2 ranks agree on") != std::string::npos);
    }
  }
}

TEST_CASE("DDP resume: rank 0 writes, every rank reads, also with another world size",
          "[distributed]") {
  const auto dir = sculpt::test::temp_dir("ddp-resume");
  const auto cfg = train_config(dir, 16);
  // The uninterrupted 2-rank run.
  auto full = run_ranks(kSculpt + " train " + cfg + " run.output_dir=" + dir + "/full");
  REQUIRE(full[0].exit_code == 0);
  // The same run stopped after 10 steps (checkpoint_every: 10), then resumed on 2 ranks.
  auto first = run_ranks(kSculpt + " train " + cfg + " run.output_dir=" + dir +
                         "/part trainer.max_steps=10");
  REQUIRE(first[0].exit_code == 0);
  auto second = run_ranks(kSculpt + " train " + cfg + " run.output_dir=" + dir +
                          "/part run.resume=auto");
  for (int k = 0; k < 2; ++k) {
    INFO("rank " << k << ": " << second[k].err);
    REQUIRE(second[k].exit_code == 0);
    CHECK(second[k].err.find("resumed from") != std::string::npos);
  }
  // Steps 11..20 after the resume equal the uninterrupted run's. (max_steps=10 ended the first
  // part with a full lr schedule of 10 steps: constant lr here, so the schedule agrees.)
  const auto a = losses(dir + "/full"), b = losses(dir + "/part");
  for (int64_t step = 11; step <= 20; ++step) {
    INFO("step " << step);
    REQUIRE(b.count(step));
    CHECK(std::abs(a.at(step) - b.at(step)) <= 1e-5);
  }
  // The 2-rank checkpoint continued by one process (world size 1): it resumes at step 10
  // and trains to 20.
  auto one = run_process("OMP_NUM_THREADS=1 " + kSculpt + " train " + cfg + " run.output_dir=" +
                         dir + "/one run.resume=" + dir + "/part/checkpoints/step_10");
  INFO(one.err);
  REQUIRE(one.exit_code == 0);
  CHECK(one.err.find("written by 2 rank(s), this run has 1") != std::string::npos);
  auto summary = nlohmann::json::parse(sculpt::test::read_text(dir + "/one/summary.json"));
  CHECK(summary["steps"] == 20);
}

TEST_CASE("distributed sampler: disjoint shards covering the data, reshuffled alike per epoch",
          "[distributed]") {
  using sculpt::data::shard_order;
  for (int64_t n : {10, 11, 13}) {
    for (bool pad : {true, false}) {
      auto order = at::randperm(n, at::kLong);
      auto s0 = shard_order(order, 0, 2, pad), s1 = shard_order(order, 1, 2, pad);
      INFO("n=" << n << " pad=" << pad);
      REQUIRE(s0.size(0) == s1.size(0));
      REQUIRE(s0.size(0) == sculpt::data::shard_size(n, 2, pad));
      std::multiset<int64_t> seen;
      for (auto* s : {&s0, &s1})
        for (int64_t i = 0; i < s->size(0); ++i) seen.insert((*s)[i].item<int64_t>());
      std::set<int64_t> distinct(seen.begin(), seen.end());
      if (pad) {
        CHECK(static_cast<int64_t>(distinct.size()) == n);  // covers every row
        CHECK(static_cast<int64_t>(seen.size()) - n == (n % 2));  // one padded repeat at most
      } else {
        CHECK(distinct.size() == seen.size());  // disjoint
        CHECK(static_cast<int64_t>(seen.size()) == n - n % 2);
      }
      // Batch k of both ranks together is batch k of one process with twice the batch.
      for (int64_t i = 0; i < s0.size(0); ++i) {
        CHECK(s0[i].item<int64_t>() == order[(2 * i) % n].item<int64_t>());
        CHECK(s1[i].item<int64_t>() == order[(2 * i + 1) % n].item<int64_t>());
      }
    }
  }
  sculpt::cli::register_builtins();
  // Two ranks' loaders over the same data: per epoch disjoint and covering, a new order per
  // epoch, and the same order whichever rank computes it (no communication needed).
  auto ds = sculpt::data::dataset_registry().create(
      "synthetic_blobs",
      sculpt::config::Config::parse("data: {name: synthetic_blobs, samples: 64, features: 4}\n"
                                    "model: {name: mlp}\n")
          .data,
      sculpt::data::DataPart::train);
  std::vector<std::vector<int64_t>> epochs;
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    std::vector<int64_t> all;
    for (int rank = 0; rank < 2; ++rank) {
      sculpt::data::LoaderOptions o;
      o.shuffle = true;
      o.seed = 9;
      o.rank = rank;
      o.world_size = 2;
      sculpt::data::Loader loader(*ds, 8, o);
      loader.start_epoch(epoch);
      sculpt::data::Batch b;
      while (loader.next(b))
        for (int64_t i = 0; i < b.size(); ++i) all.push_back(b.rows[i].item<int64_t>());
    }
    std::set<int64_t> distinct(all.begin(), all.end());
    CHECK(all.size() == 64);
    CHECK(distinct.size() == 64);
    epochs.push_back(all);
  }
  CHECK(epochs[0] != epochs[1]);
}

TEST_CASE("torchrun --no-python runs sculpt train on 2 ranks like the single-process run",
          "[distributed]") {
  const char* python = SCULPT_TEST_PYTHON_EXE;
  const fs::path torchrun = fs::path(python).parent_path() / "torchrun";
  if (std::string(python).empty() || !fs::exists(torchrun))
    sculpt::test::skip_test("torchrun not found beside " + std::string(python));
  const auto dir = sculpt::test::temp_dir("ddp-torchrun");
  auto single = run_process("OMP_NUM_THREADS=1 " + kSculpt + " train " + train_config(dir, 32) +
                            " run.output_dir=" + dir + "/single");
  REQUIRE(single.exit_code == 0);
  auto r = run_process("timeout 300 " + torchrun.string() +
                       " --no-python --nproc-per-node 2 --master-port " +
                       std::to_string(free_port()) + " " + kSculpt + " train " +
                       train_config(dir, 16) + " run.output_dir=" + dir + "/torchrun");
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.err.find("torchrun") != std::string::npos);  // the world came from torchrun's variables
  require_same_losses(losses(dir + "/single"), losses(dir + "/torchrun"), 1e-5);
}
