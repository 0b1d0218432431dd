// The incremental (continual) trainer: the standard step loop (train_loop.h) run once per item
// of `increments:`, each the run's data (or another dataset) filtered to some classes and/or
// with its pixels permuted. Before increment i it measures the model on increment i (for FWT);
// after it, the callbacks' on_increment_end (EWC's Fisher, ...) and the accuracy on every
// increment seen, one row of the accuracy matrix R. Metrics (continual_metrics.h) go to
// metrics.jsonl (split "continual", one record per increment), summary.json ("continual") and
// report.html (a heatmap of R).
//
// Checkpoints hold incremental.json beside the usual files: the matrix so far, the random-init
// accuracies and the global step the current increment began at, so run.resume continues
// mid-increment exactly, and incremental.resume_from continues a finished earlier run.
// Data parallelism: each rank evaluates its shard of every increment and the metric sums are
// added over the ranks (every rank gets the same matrix); passes reduce their own state (EWC's
// Fisher) through the collectives. A checkpoint resumes at another world size as the standard
// trainer's does (resume_at_world_size, counted from the increment's first step).
#include <torch/torch.h>

#include <filesystem>
#include <limits>
#include <set>
#include <utility>

#include "core/config/trainer_traits.h"
#include "core/config/visitors.h"
#include "core/data/gr.h"
#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/logging/logging.h"
#include "trainers/callback_state.h"
#include "trainers/continual_metrics.h"
#include "trainers/data_fingerprint.h"
#include "trainers/increments.h"
#include "core/optim/schedules.h"
#include "trainers/run_parts.h"
#include "trainers/strategies/step_strategy.h"
#include "trainers/train_loop.h"
#include "trainers/trainer.h"
#include "trainers/versions.h"

namespace fs = std::filesystem;

namespace sculpt::trainers {

namespace {

// The distinct targets (document IDs of a retrieval corpus) of a dataset's rows, as byte keys.
void add_targets(const data::Dataset& ds, std::set<std::string>& keys) {
  if (ds.size() == 0) return;
  auto t = ds.targets().to(at::kCPU).to(at::kLong).contiguous();
  t = t.reshape({t.size(0), -1});
  const int64_t w = t.size(1);
  const auto* p = t.const_data_ptr<int64_t>();
  for (int64_t r = 0; r < t.size(0); ++r)
    keys.emplace(reinterpret_cast<const char*>(p + r * w), size_t(w) * sizeof(int64_t));
}

class IncrementalTrainer final : public Trainer {
 public:
  explicit IncrementalTrainer(const config::TrainerConfig& c) : cfg_(c) {}

  FitResult fit(RunContext& ctx, const Callbacks& callbacks) override {
    const auto& c = ctx.config();
    const auto& ic = c.incremental;
    const auto t0 = Clock::now();
    const std::string store_dir =
        ic.versions_dir.empty() ? (ctx.dir() / "versions").string() : ic.versions_dir;
    if (ic.versions && ctx.writes_files()) check_lineage(versions::Store(store_dir), c);
    const auto device = ctx.device();
    const bool bf16 = use_bf16(cfg_.precision, device);
    auto strategy = make_local_strategy(ctx, bf16);
    auto parts = build_run_parts(c, device);
    auto& task = *parts.task;
    const int64_t n = static_cast<int64_t>(c.increments.size());
    std::vector<Increment> incs;
    for (int64_t i = 0; i < n; ++i) incs.push_back(make_increment(c, parts, i));
    at::Tensor no_stage_inputs;  // the local strategy keeps the whole model
    auto model_ptr = strategy->take_model(std::move(parts.model), task, no_stage_inputs);
    auto& model = *model_ptr;
    // The initial model on every increment (FWT's reference), before anything is loaded.
    std::vector<double> baseline;
    for (auto& inc : incs) baseline.push_back(measure(model, task, inc, ctx, bf16));

    auto current = increment_split(c, parts, 0);
    StepContext hook = make_hook(ctx, current.train, parts.task);
    hook.total_steps = total_steps(cfg_, incs[0].data, rows_per_rank(ctx, current.train.size()),
                                   "increments[0]", &hook.steps_per_epoch);
    attach_callbacks(callbacks, model, hook, current.train);
    auto optimizer = build_optimizer(c, model, callbacks);
    hook.optimizer = optimizer.get();
    auto schedule = schedule_registry().create(c.scheduler.name, c.scheduler);

    CheckpointStore store(strategy->checkpoint_dir(), cfg_.keep_checkpoints);
    const auto resume = strategy->resume_point();
    Progress pr;
    TrainState st = start_point(resume, c, model, *optimizer, callbacks, incs, pr);
    st.config_hash = c.hash();
    pr.baseline = baseline;
    MetricsLog metrics(ctx.dir(), resume, cfg_.tensorboard, t0,
                       ctx.writes_files());

    // Model versions (incremental.versions, docs/versions.md): the starting weights as the base
    // of an empty store, then one version per increment.
    std::unique_ptr<versions::Store> vstore;
    std::set<std::string> seen_docs;  // IDs of the documents trained so far
    if (ic.versions && ctx.writes_files()) {
      vstore = std::make_unique<versions::Store>(store_dir);
      for (size_t j = 0; j < pr.matrix.size(); ++j) {
        auto split = increment_split(c, parts, static_cast<int64_t>(j));
        add_targets(split.train, seen_docs);
        add_targets(split.val, seen_docs);
      }
      if (vstore->empty())
        write_version(*vstore, -1, model, callbacks, ctx, incs, pr, st, 0, 0, 0);
    }

    LoopResult timing;  // over every increment of this process
    fs::path continue_from = resume ? *resume : fs::path();  // for the first loop only
    for (int64_t i = static_cast<int64_t>(pr.matrix.size()); i < n; ++i) {
      const auto inc_t0 = Clock::now();
      if (i > 0) current = increment_split(c, parts, i);
      hook.train = &current.train;
      hook.data = &current.train.spec();
      hook.increment = i;
      const int64_t steps = total_steps(cfg_, incs[i].data, rows_per_rank(ctx, current.train.size()),
                                        "increments[" + std::to_string(i) + "]",
                                        &hook.steps_per_epoch);
      const bool fresh = st.step == pr.begin_step && st.epoch == 0 && st.batch_in_epoch == 0;
      if (fresh) {
        // Each increment draws from a generator seeded by (seed, increment): a run continued
        // with resume_from draws what one run over all increments draws.
        torch::manual_seed(static_cast<uint64_t>(c.run.seed) * 1000003ull +
                           static_cast<uint64_t>(i));
        if (ic.reset_optimizer) {
          optimizer = build_optimizer(c, model, callbacks);
          hook.optimizer = optimizer.get();
        }
        if (i > 0) pr.matrix.back().push_back(measure(model, task, incs[i], ctx, bf16));
      }
      hook.total_steps = steps;
      if (!fresh && st.world_size != ctx.world_size()) {
        // A checkpoint written by another number of ranks, inside this increment: continue
        // after the samples it had read, counting steps from the increment's first one.
        st.step -= pr.begin_step;
        resume_at_world_size(st, ctx.world_size(), incs[i].data.batch_size,
                             hook.steps_per_epoch, cfg_.grad_accumulation, cfg_.max_steps > 0);
        st.step += pr.begin_step;
      }
      log::info("increment ", i, " (", incs[i].name, "): ", current.train.size(), " train / ",
                current.val.size(), " val; ", steps, " steps");
      strategy->set_output_map(increment_output_map(incs[i]));
      strategy->set_eval_task(incs[i].task.get());  // validation decodes with its ID trie
      const int64_t begin = pr.begin_step;
      LoopParts lp{ctx,          cfg_,       model,     task,  current.train, current.val,
                   incs[i].data, *optimizer, *schedule, store, callbacks,     hook,
                   metrics,      *strategy};
      lp.loader_seed = seed_of(c, i);
      lp.begin_step = begin;
      lp.end_step = begin + steps;
      lp.save_extra = [&](const fs::path& dir) { write_progress(dir, pr, incs); };
      lp.record_extra = {{"increment", i}};
      lp.resumed_from = std::exchange(continue_from, fs::path());
      TrainLoop loop(std::move(lp));
      const LoopResult r = loop.run(st);
      timing.add(r);
      if (r.interrupted) return interrupted_at(st.step, t0);
      loop.eval_and_record(st);
      hook.step = st.step;
      for (const auto& cb : callbacks) cb->on_increment_end(model, current.train, hook);
      close_increment(i, model, task, incs, ctx, bf16, seconds_since(inc_t0), pr, st, metrics);
      loop.save(st, false);
      if (vstore) {
        // Documents seen before whose IDs this increment's corpus no longer holds: removed.
        int64_t removed = 0;
        if (const auto& trie = incs[i].eval->spec().valid_targets) {
          for (auto it = seen_docs.begin(); it != seen_docs.end();) {
            const auto* p = reinterpret_cast<const int64_t*>(it->data());
            data::TokenSeq id(p, p + it->size() / sizeof(int64_t));
            while (!id.empty() && id.back() == data::token::pad) id.pop_back();
            if (!trie->contains(id)) {
              it = seen_docs.erase(it);
              ++removed;
            } else {
              ++it;
            }
          }
        }
        const auto before = seen_docs.size();
        add_targets(current.train, seen_docs);
        add_targets(current.val, seen_docs);
        write_version(*vstore, i, model, callbacks, ctx, incs, pr, st,
                      static_cast<int64_t>(seen_docs.size() - before), removed,
                      static_cast<int64_t>(seen_docs.size()));
      }
    }

    hook.step = st.step;
    for (const auto& cb : callbacks) cb->finalize(model, hook);
    if (c.distributed.verify_state) verify_ranks_agree(ctx.collectives(), model, callbacks);
    FitResult result;
    result.steps = st.step;
    const auto final_metrics = continual_metrics(pr.matrix, pr.baseline);
    for (const auto& [k, v] : final_metrics.items())
      result.final_metrics["continual"][k] = v.get<double>();
    result.time_s = seconds_since(t0);
    auto summary = run_summary(ctx, model, result, timing, callbacks);
    summary["continual"] = continual_summary(ic, pr, incs);
    strategy->write_outputs(summary, callbacks);
    return result;
  }

 private:
  // The trainer's own state, in checkpoints (incremental.json).
  struct Progress {
    AccuracyMatrix matrix;         // rows done; the last row may hold the next increment too
    std::vector<double> baseline;  // the initial model on every increment
    std::vector<double> seconds;   // wall time of each increment done
    int64_t begin_step = 0;        // global step where the current increment began
  };

  // An update keeps its parent version's tokenizer and document IDs (data_fingerprint.h): before
  // anything is built, every increment's data is checked against the store's current version
  // (an empty store: the run's data, which the base version records). UserError naming both.
  static void check_lineage(const versions::Store& store, const config::Config& c) {
    const int64_t cur = store.current();
    const auto parent =
        cur > 0 ? store.info(cur).value("data", nlohmann::json()) : data_fingerprint(c.data);
    const std::string whose = cur > 0 ? "version " + std::to_string(cur) + "'s (" +
                                            store.path_of(cur) + ", the store's current version)"
                                      : "the run's data's (the base version of the new store)";
    for (size_t i = 0; i < c.increments.size(); ++i) {
      const auto mismatch =
          fingerprint_mismatch(parent, data_fingerprint(increment_data(c, int64_t(i))));
      const auto& name = c.increments[i].name;
      SCULPT_CHECK(mismatch.empty(), c.source_file, ": increments[", i, "] (",
                   name.empty() ? "increment " + std::to_string(i) : name, "): its tokenizer or document IDs differ from ", whose,
                   ", the parent of the versions this run writes (parent vs increment):\n",
                   mismatch, "\nAn update keeps its parent's tokenizer and ID scheme; record a "
                   "model over other ids in another store (incremental.versions_dir)");
    }
  }

  // A version after increment i (-1: the base, the weights the run starts from), with the row
  // of the accuracy matrix as its per-slice metrics. Skipped when the current version already
  // is this run's increment i (a resumed run).
  static void write_version(versions::Store& store, int64_t i, models::Model& model,
                            const Callbacks& callbacks, const RunContext& ctx,
                            const std::vector<Increment>& incs, const Progress& pr,
                            const TrainState& st, int64_t added, int64_t removed,
                            int64_t documents) {
    const auto& c = ctx.config();
    const std::string run = fs::absolute(ctx.dir()).string();
    if (const int64_t cur = store.current(); cur > 0) {
      const auto src = store.info(cur).value("source", nlohmann::json::object());
      if (src.value("run", std::string()) == run && src.value("increment", int64_t{-2}) == i)
        return;
    }
    auto v = versions::capture(model, callbacks);
    v.data = data_fingerprint(i >= 0 ? incs[size_t(i)].data : c.data);
    v.config_yaml = c.dump();
    v.config_hash = c.hash();
    v.source = {{"run", run}, {"increment", i}, {"step", st.step}};
    const bool retrieval = !incs.empty() && incs[0].eval->spec().valid_targets != nullptr;
    if (i >= 0) {
      v.source["name"] = incs[size_t(i)].name;
      v.changes = {{"what", "increment " + incs[size_t(i)].name}};
      if (retrieval) {
        v.changes["documents_added"] = added;
        v.changes["documents_removed"] = removed;
        v.changes["documents"] = documents;
      }
    } else {
      v.changes = {{"what", "base"}};
    }
    // The metrics: row i of the matrix, or for the base what the starting weights measured.
    std::vector<double> row = i >= 0 ? pr.matrix[size_t(i)]
                              : !pr.matrix.empty() ? pr.matrix.back() : pr.baseline;
    const std::string& metric = c.incremental.metric;
    nlohmann::json slices = nlohmann::json::array();
    double sum = 0;
    int64_t count = 0;
    const size_t cols = i >= 0 ? std::min(row.size(), size_t(i) + 1) : row.size();
    for (size_t j = 0; j < cols && j < incs.size(); ++j) {
      if (!std::isfinite(row[j])) continue;
      slices.push_back(slice_json(incs[j].name, row[j], incs[j].eval->size(), metric));
      sum += row[j], ++count;
    }
    v.metrics = {{"metric", metric}, {"slices", slices}};
    if (count > 0) v.metrics["headline"] = sum / static_cast<double>(count);
    const int64_t id = store.add(v);
    log::info("version ", id, " written to ", store.path_of(id));
  }

  // Where to start: a checkpoint of this run (`resume`, from run.resume), the end of an earlier
  // run (incremental.resume_from), or the beginning.
  static TrainState start_point(const std::optional<fs::path>& resume, const config::Config& c,
                                models::Model& model, torch::optim::Optimizer& optimizer,
                                const Callbacks& callbacks, const std::vector<Increment>& incs,
                                Progress& pr) {
    const auto& ic = c.incremental;
    TrainState st;
    pr.matrix.clear();
    if (resume) {
      st = resume_from(*resume, c, model, optimizer, callbacks, false);
      pr = read_progress(*resume, incs, false);
      log::info("resumed from ", resume->string(), " at step ", st.step, " in increment ",
                pr.matrix.size());
    } else if (!ic.resume_from.empty()) {
      SCULPT_CHECK(fs::exists(ic.resume_from), c.source_file, ": incremental.resume_from: ",
                   ic.resume_from, " does not exist");
      const auto prev = resolve_resume(ic.resume_from, ic.resume_from);
      SCULPT_CHECK(prev, "incremental.resume_from: ", ic.resume_from, " has no checkpoint");
      st = resume_from(*prev, c, model, optimizer, callbacks, false);
      pr = read_progress(*prev, incs, true);
      SCULPT_CHECK(st.epoch == 0 && st.batch_in_epoch == 0 && st.step == pr.begin_step,
                   "incremental.resume_from: ", prev->string(), " stopped inside increment ",
                   pr.matrix.size(), "; finish that run first (run.resume=auto)");
      log::info("continuing ", ic.resume_from, " after ", pr.matrix.size(), " increments");
    }
    return st;
  }

  // After increment i: row i of the accuracy matrix, the next increment's start (the first
  // batch of its data), and the "continual" record.
  static void close_increment(int64_t i, models::Model& model, const tasks::Task& task,
                              const std::vector<Increment>& incs, const RunContext& ctx,
                              bool bf16, double seconds, Progress& pr, TrainState& st,
                              MetricsLog& metrics) {
    std::vector<double> row;
    for (int64_t j = 0; j <= i; ++j) row.push_back(measure(model, task, incs[j], ctx, bf16));
    pr.matrix.push_back(row);
    pr.seconds.push_back(seconds);
    pr.begin_step = st.step;
    st.epoch = st.batch_in_epoch = st.evals_since_best = 0;
    st.has_best = false;
    nlohmann::json rec = continual_metrics(pr.matrix, pr.baseline);
    rec.update({{"step", st.step}, {"split", "continual"}, {"increment", i}});
    rec["row"] = matrix_json({row}, static_cast<size_t>(i) + 1)[0];
    metrics.record(rec);
    log::info("after increment ", i, ": ", rec.dump());
  }

  static uint64_t seed_of(const config::Config& c, int64_t i) {
    return static_cast<uint64_t>(c.run.seed) + 7919ull * static_cast<uint64_t>(i);
  }

  static double measure(models::Model& model, const tasks::Task& task, const Increment& inc,
                        const RunContext& ctx, bool bf16) {
    return measure_increment(model, task, inc, ctx.config().incremental.metric, ctx.device(),
                             bf16, ctx.data_parallel() ? &ctx.collectives() : nullptr);
  }

  static void write_progress(const fs::path& dir, const Progress& pr,
                             const std::vector<Increment>& incs) {
    nlohmann::json specs = nlohmann::json::array();
    for (size_t i = 0; i < pr.matrix.size() && i < incs.size(); ++i) specs.push_back(incs[i].spec);
    nlohmann::json j = {{"matrix", matrix_json(pr.matrix, incs.size())},
                        {"baseline", pr.baseline},
                        {"seconds", pr.seconds},
                        {"begin_step", pr.begin_step},
                        {"increments_done", pr.matrix.size()},
                        {"specs", specs}};
    io::write_file_atomic((dir / "incremental.json").string(), j.dump(2) + "\n");
  }

  static Progress read_progress(const fs::path& dir, const std::vector<Increment>& incs,
                                bool across_runs) {
    const fs::path file = dir / "incremental.json";
    SCULPT_CHECK(fs::exists(file), file.string(),
                 ": missing; the checkpoint was not written by the incremental trainer");
    const nlohmann::json j = io::read_json_file(file.string());
    Progress pr;
    pr.matrix = matrix_from_json(j.at("matrix"));
    pr.seconds = j.value("seconds", std::vector<double>{});
    pr.begin_step = j.value("begin_step", int64_t{0});
    SCULPT_CHECK(pr.matrix.size() <= incs.size(), file.string(), ": ", pr.matrix.size(),
                 " increments were done, the config lists only ", incs.size());
    const auto specs = j.value("specs", std::vector<std::string>{});
    for (size_t i = 0; i < specs.size() && i < incs.size(); ++i)
      SCULPT_CHECK(specs[i] == incs[i].spec, file.string(), ": increment ", i,
                   " was trained on\n", specs[i], "but the config lists\n", incs[i].spec,
                   across_runs ? "(list the earlier run's increments first)" : "");
    // Keep the measured part of every row: row i holds columns 0..i+1 at most.
    for (size_t i = 0; i < pr.matrix.size(); ++i) {
      auto& row = pr.matrix[i];
      while (!row.empty() && !std::isfinite(row.back())) row.pop_back();
    }
    return pr;
  }

  static nlohmann::json continual_summary(const config::IncrementalConfig& ic, const Progress& pr,
                                          const std::vector<Increment>& incs) {
    nlohmann::json names = nlohmann::json::array();
    for (const auto& inc : incs) names.push_back(inc.name);
    nlohmann::json j = continual_metrics(pr.matrix, pr.baseline);
    j["scenario"] = config::spelling(config::kScenarios, ic.scenario);
    j["metric"] = ic.metric;
    j["increments"] = names;
    j["accuracy_matrix"] = matrix_json(pr.matrix, incs.size());
    j["initial_accuracy"] = pr.baseline;
    j["increment_seconds"] = pr.seconds;
    // Per slice (the documents of each increment): the metric after the last increment with its
    // queries and interval, right after its own increment, and the forgetting between the two.
    nlohmann::json slices = nlohmann::json::array();
    if (!pr.matrix.empty()) {
      const auto& last = pr.matrix.back();
      for (size_t k = 0; k < incs.size() && k < pr.matrix.size() && k < last.size(); ++k) {
        auto s = slice_json(incs[k].name, last[k], incs[k].eval->size(), ic.metric);
        const double learned = k < pr.matrix[k].size() ? pr.matrix[k][k] : NAN;
        if (std::isfinite(learned)) {
          s["learned"] = learned;
          s["forgetting"] = learned - last[k];
        }
        slices.push_back(s);
      }
    }
    j["slices"] = slices;
    return j;
  }

  config::TrainerConfig cfg_;
};

}  // namespace

// The incremental trainer's options: no keys of its own (`incremental:` and `increments:` are
// top-level sections), but it tells the config check that it trains on increments.
struct IncrementalTrainerOptions final : config::Section, config::TrainerTraits {
  void visit(config::Visitor& /*v*/) override {}
  bool trains_on_increments() const override { return true; }
};

void add_incremental_trainer(TrainerRegistry& r) {
  r.add("incremental",
        "continual learning: the standard loop once per item of `increments:`, accuracy matrix, "
        "average accuracy, BWT/FWT, forgetting",
        [](const config::TrainerConfig& c) { return std::make_unique<IncrementalTrainer>(c); },
        [] { return std::make_shared<IncrementalTrainerOptions>(); });
}

}  // namespace sculpt::trainers
