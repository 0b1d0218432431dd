// extends + overrides precedence, typed overrides, and the resolved dump reading back the same.
#include <catch2/catch.hpp>

#include <filesystem>

#include "cli/app.h"
#include "core/config/config.h"
#include "core/config/errors.h"
#include "core/config/visitors.h"
#include "core/optim/optimizers.h"
#include "core/optim/schedules.h"
#include "tests/support/process.h"

using sculpt::config::Config;

namespace {
struct Files {
  std::string dir, base, mid, run;
  Files() {
    sculpt::cli::register_builtins();
    dir = sculpt::test::temp_dir("merge");
    base = dir + "/base.yaml";
    mid = dir + "/sub/mid.yaml";
    run = dir + "/sub/run.yaml";
    std::filesystem::create_directories(dir + "/sub");
    sculpt::test::write_text(base,
                             "run: {name: base, seed: 1}\n"
                             "model: {name: mlp, hidden: [64, 64]}\n"
                             "data: {name: synthetic_blobs, batch_size: 16}\n"
                             "optimizer: {name: sgd, lr: 0.5, momentum: 0.9}\n"
                             "trainer: {epochs: 5, log_every: 7}\n");
    sculpt::test::write_text(mid, "extends: ../base.yaml\nrun: {seed: 2}\ntrainer: {epochs: 6}\n");
    sculpt::test::write_text(run,
                             "extends: mid.yaml\n"
                             "run:\n  name: child\n"
                             "trainer:\n  epochs: 7\n"
                             "model:\n  hidden: [8]\n");
  }
};
}  // namespace

TEST_CASE("extends merges maps key by key, the extending file wins and lists replace", "[config]") {
  Files f;
  auto cfg = Config::load(f.run);
  CHECK(cfg.run.name == "child");     // child wins
  CHECK(cfg.run.seed == 2);           // mid wins over base
  CHECK(cfg.trainer.epochs == 7);     // child over mid over base
  CHECK(cfg.trainer.log_every == 7);  // base survives
  CHECK(cfg.data.batch_size == 16);
  CHECK(cfg.optimizer.lr == 0.5);
  const auto& sgd = dynamic_cast<const sculpt::SgdOptions&>(*cfg.optimizer.options);
  CHECK(sgd.momentum == 0.9);
  std::string dumped = cfg.dump();
  CHECK_THAT(dumped, Catch::Contains("hidden: [8]"));  // the list was replaced, not merged
}

TEST_CASE("command-line overrides win over every file and are typed", "[config][override]") {
  Files f;
  auto cfg = Config::load(f.run, {"trainer.epochs=9", "optimizer.lr=1e-3", "data.shuffle=false",
                                  "model.hidden=[3,4,5]", "run.name=over", "optimizer.momentum=0"});
  CHECK(cfg.trainer.epochs == 9);
  CHECK(cfg.optimizer.lr == 1e-3);
  CHECK_FALSE(cfg.data.shuffle);
  CHECK(cfg.run.name == "over");
  CHECK(dynamic_cast<const sculpt::SgdOptions&>(*cfg.optimizer.options).momentum == 0.0);
  CHECK_THAT(cfg.dump(), Catch::Contains("hidden: [3, 4, 5]"));
  // The last of two overrides of one key wins.
  auto twice = Config::load(f.run, {"trainer.epochs=1", "trainer.epochs=2"});
  CHECK(twice.trainer.epochs == 2);
}

TEST_CASE("switching a registry name by override swaps its options", "[config][override]") {
  Files f;
  // momentum belongs to sgd; switching to adam must make it an unknown key...
  CHECK_THROWS_AS(Config::load(f.run, {"optimizer.name=adam"}), sculpt::config::ConfigError);
  // ...and adam's own options become valid. A map value merges into the section.
  sculpt::test::write_text(f.dir + "/plain.yaml",
                           "model: {name: mlp}\ndata: {name: synthetic_blobs}\n"
                           "optimizer: {name: sgd, lr: 0.5}\n");
  auto cfg = Config::load(f.dir + "/plain.yaml", {"optimizer={name: adam, beta2: 0.99}"});
  CHECK(cfg.optimizer.name == "adam");
  CHECK(cfg.optimizer.lr == 0.5);
  CHECK(dynamic_cast<const sculpt::AdamOptions&>(*cfg.optimizer.options).beta2 == 0.99);
  // A model map naming another model replaces the section (its sizes and init weights do not
  // apply to the new model); one naming the same model merges.
  sculpt::test::write_text(f.dir + "/lm.yaml",
                           "model: {name: transformer_encoder, d_model: 32, heads: 2, init: w}\n"
                           "data: {name: synthetic_blobs}\n");
  auto other = Config::load(f.dir + "/lm.yaml", {"model={name: mlp, hidden: [8]}"});
  CHECK(other.model.name == "mlp");
  CHECK(other.model.init.empty());
  auto same = Config::load(f.dir + "/lm.yaml", {"model={name: transformer_encoder, heads: 4}"});
  CHECK(same.model.init == "w");
}

TEST_CASE("the resolved config dumps to YAML that loads to the same config", "[config]") {
  Files f;
  auto cfg = Config::load(
      f.run, {"optimizer.lr=0.1", "scheduler={name: cosine, min_factor: 0.05}", "run.device=cpu"});
  std::string once = cfg.dump();
  auto again = Config::parse(once, "dump.yaml");
  CHECK(again.dump() == once);
  CHECK(again.hash() == cfg.hash());
  CHECK(again.optimizer.lr == 0.1);
  CHECK(again.run.device == "cpu");
  CHECK(dynamic_cast<const sculpt::CosineScheduleOptions&>(*again.scheduler.options).min_factor ==
        0.05);
  // A different value changes the hash.
  auto other = Config::load(f.run, {"optimizer.lr=0.2"});
  CHECK(other.hash() != cfg.hash());
}

TEST_CASE("doubles survive the dump exactly", "[config]") {
  for (double v : {0.1, 1e-8, 3.0, 0.30000000000000004, 123456.789, 2.5e-300}) {
    std::string s = sculpt::config::format_double(v);
    CHECK(std::strtod(s.c_str(), nullptr) == v);
  }
  CHECK(sculpt::config::format_double(1.0) == "1.0");
  CHECK(sculpt::config::format_double(0.1) == "0.1");
}

TEST_CASE("an extends cycle is an error, not a hang", "[config]") {
  std::string dir = sculpt::test::temp_dir("cycle");
  sculpt::test::write_text(dir + "/a.yaml", "extends: b.yaml\n");
  sculpt::test::write_text(dir + "/b.yaml", "extends: a.yaml\n");
  try {
    Config::load(dir + "/a.yaml");
    FAIL("no error");
  } catch (const sculpt::config::ConfigError& e) {
    CHECK_THAT(e.what(), Catch::Contains("cycle"));
    // Reported where it closes: b.yaml's `extends:` line, with the chain of files.
    REQUIRE(e.diagnostics().size() == 1);
    const auto& d = e.diagnostics()[0];
    CHECK(d.source.file == dir + "/b.yaml");
    CHECK(d.source.line == 1);
    CHECK_THAT(d.message, Catch::Contains("a.yaml -> ") && Catch::Contains("b.yaml -> "));
  }
}

TEST_CASE("learning-rate schedules follow their closed forms", "[optim]") {
  sculpt::cli::register_builtins();
  auto cfg = Config::parse(
      "model: {name: mlp}\ndata: {name: synthetic_blobs}\n"
      "scheduler: {name: step, step_size: 10, gamma: 0.5, warmup_steps: 4}\n");
  auto s = sculpt::schedule_registry().create("step", cfg.scheduler);
  CHECK(sculpt::lr_factor(*s, 4, 0, 100) == Approx(0.25));
  CHECK(sculpt::lr_factor(*s, 4, 3, 100) == Approx(1.0));
  CHECK(sculpt::lr_factor(*s, 4, 13, 100) == Approx(1.0));
  CHECK(sculpt::lr_factor(*s, 4, 14, 100) == Approx(0.5));
  CHECK(sculpt::lr_factor(*s, 4, 34, 100) == Approx(0.125));
  auto cos_cfg = Config::parse(
      "model: {name: mlp}\ndata: {name: synthetic_blobs}\n"
      "scheduler: {name: cosine, min_factor: 0.1}\n");
  auto c = sculpt::schedule_registry().create("cosine", cos_cfg.scheduler);
  CHECK(c->factor(0, 100) == Approx(1.0));
  CHECK(c->factor(50, 100) == Approx(0.1 + 0.9 * 0.5));
  CHECK(c->factor(100, 100) == Approx(0.1));
  // one_cycle against torch.optim.lr_scheduler.OneCycleLR(total_steps=100, pct_start=0.3,
  // div_factor=25, final_div_factor=1e4, three_phase=False), lr / max_lr at steps 0..99:
  auto oc_cfg = Config::parse(
      "model: {name: mlp}\ndata: {name: synthetic_blobs}\n"
      "scheduler: {name: one_cycle}\n");
  auto oc = sculpt::schedule_registry().create("one_cycle", oc_cfg.scheduler);
  CHECK(oc->factor(0, 100) == Approx(0.04).epsilon(1e-9));
  CHECK(oc->factor(10, 100) == Approx(0.2951639485).epsilon(1e-9));
  CHECK(oc->factor(29, 100) == Approx(1.0).epsilon(1e-9));
  CHECK(oc->factor(50, 100) == Approx(0.7938934506).epsilon(1e-9));
  CHECK(oc->factor(99, 100) == Approx(4e-06).epsilon(1e-6));
}
