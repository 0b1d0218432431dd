// The standard supervised loop: batch -> forward -> task loss -> backward -> (clip) -> step,
// with the lr schedule applied per step, periodic logging and evaluation, metrics.jsonl and
// summary.json in the run directory.
#include <torch/torch.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/checkpoint/checkpoint.h"
#include "core/data/loader.h"
#include "core/io/atomic_file.h"
#include "core/logging/logging.h"
#include "core/models/model.h"
#include "core/optim/optimizers.h"
#include "core/optim/schedules.h"
#include "core/report/html_report.h"
#include "core/report/progress.h"
#include "core/report/tensorboard.h"
#include "core/run/interrupt.h"
#include "core/tasks/task.h"
#include "trainers/callback_state.h"
#include "trainers/run_parts.h"
#include "trainers/trainer.h"

namespace sculpt::trainers {

TrainerRegistry& trainer_registry() {
  static TrainerRegistry registry("trainers");
  return registry;
}

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

class StandardTrainer final : public Trainer {
 public:
  explicit StandardTrainer(const config::TrainerConfig& c) : cfg_(c) {}

  FitResult fit(RunContext& ctx, const Callbacks& callbacks) override {
    const auto& c = ctx.config();
    const auto t0 = Clock::now();
    auto parts = build_run_parts(c, ctx.device());
    auto& split = parts.split;
    auto& model = parts.model;
    auto& task = parts.task;
    TrainState st;
    // What every hook may read; batch, outputs and loss are set inside the step.
    StepContext hook;
    hook.device = ctx.device();
    hook.rank = ctx.rank();
    hook.world_size = ctx.world_size();
    hook.run = &ctx;
    hook.data = &split.train.spec();
    hook.train = &split.train;
    hook.augmented = c.data.random_crop_padding > 0 || c.data.hflip;
    data::Loader loader(
        split.train, c.data.batch_size,
        data::LoaderOptions::for_training(c.data, static_cast<uint64_t>(c.run.seed)));
    SCULPT_CHECK(loader.batches_per_epoch() > 0, "data: the training split has ",
                 split.train.size(), " samples, fewer than one batch of ", c.data.batch_size,
                 " with data.drop_last=true");
    const int64_t k = cfg_.grad_accumulation;
    const int64_t steps_per_epoch = (loader.batches_per_epoch() + k - 1) / k;
    const int64_t total = cfg_.max_steps > 0 ? cfg_.max_steps : cfg_.epochs * steps_per_epoch;
    hook.total_steps = total;
    hook.steps_per_epoch = steps_per_epoch;
    // Passes attach before the optimizer exists, so parameters they add are trained; they see
    // a sample of the training rows for shapes and calibration.
    if (!callbacks.empty()) {
      data::Batch sample;
      auto rows = at::arange(std::min<int64_t>(split.train.size(), 4), at::kLong);
      sample.inputs = split.train.input_rows(rows).to(ctx.device());
      sample.targets = split.train.target_rows(rows).to(ctx.device());
      sample.rows = rows;
      hook.batch = &sample;
      for (const auto& cb : callbacks) cb->attach(*model, hook);
      hook.batch = nullptr;
      model->to(ctx.device());
    }
    std::vector<std::pair<std::string, at::Tensor>> named;
    for (const auto& p : model->named_parameters()) named.emplace_back(p.key(), p.value());
    for (size_t i = 0; i < callbacks.size(); ++i) {
      const auto extra = callbacks[i]->parameters();
      for (size_t j = 0; j < extra.size(); ++j)
        named.emplace_back(callbacks[i]->name() + "." + std::to_string(i) + "." + std::to_string(j),
                           extra[j]);
    }
    auto optimizer = optimizer_registry().create(
        c.optimizer.name, split_for_weight_decay(named, c.optimizer.no_decay_bias_norm),
        c.optimizer);
    hook.optimizer = optimizer.get();
    auto schedule = schedule_registry().create(c.scheduler.name, c.scheduler);
    const bool bf16 = use_bf16(cfg_.precision, ctx.device());
    log::info("model ", c.model.name, ": ", model->parameter_count(), " parameters, ",
              model->parameter_bytes(), " bytes; data ", c.data.name, ": ", split.train.size(),
              " train / ", split.val.size(), " val; ", total, " steps on ", ctx.device().str(),
              bf16 ? " (bf16 autocast)" : "");

    report::ProgressBar* progress_ptr = nullptr;  // set once the bar exists (evals clear it)
    // Resume: weights, optimizer, RNG, pass state and the position in the data.
    st.config_hash = c.hash();
    CheckpointStore store(ctx.dir(), cfg_.keep_checkpoints);
    const auto resume_from = resolve_resume(c.run.resume, ctx.dir());
    if (resume_from) {
      st = CheckpointStore::load(*resume_from, *model, *optimizer);
      load_callback_states(callbacks, *resume_from);
      if (st.config_hash != c.hash())
        log::warn("resuming from a checkpoint written with another config (hash ", st.config_hash,
                  ", now ", c.hash(), ")");
      st.config_hash = c.hash();
      log::info("resumed from ", resume_from->string(), " at step ", st.step);
    }
    // A resumed run appends to its metrics; a fresh one starts them anew.
    std::ofstream metrics(ctx.dir() / "metrics.jsonl",
                          resume_from ? std::ios::app : std::ios::trunc);
    std::unique_ptr<report::EventWriter> events;
    if (cfg_.tensorboard)
      events = std::make_unique<report::EventWriter>((ctx.dir() / "tensorboard").string());
    auto record = [&](nlohmann::json j) {
      j["elapsed_s"] = seconds_since(t0);
      metrics << j.dump() << "\n";
      metrics.flush();
      if (!events) return;
      const std::string prefix = j["split"].get<std::string>() + "/";
      for (const auto& [key, value] : j.items())
        if (value.is_number() && key != "step" && key != "epoch")
          events->add_scalar(prefix + key, value.get<double>(), j["step"].get<int64_t>());
      events->flush();
    };
    auto save = [&](bool is_best) {
      return store.save(*model, *optimizer, st, is_best, [&](const std::filesystem::path& dir) {
        save_callback_states(callbacks, dir);
      });
    };
    auto eval_and_record = [&]() {
      if (split.val.size() == 0) return std::map<std::string, double>{};
      if (progress_ptr) progress_ptr->clear();
      auto m = evaluate(*model, *task, split.val, c.data, ctx.device(), bf16);
      nlohmann::json j = {{"step", st.step}, {"epoch", st.epoch}, {"split", "val"}};
      std::string line;
      for (const auto& [k, v] : m) {
        j[k] = v;
        line += " " + k + "=" + std::to_string(v);
      }
      record(j);
      log::info("step ", st.step, " val", line);
      return m;
    };
    // Evaluates and, when the tracked metric improved, saves a checkpoint marked best.
    auto eval_and_track = [&](bool& improved) {
      improved = false;
      auto m = eval_and_record();
      auto it = m.find(cfg_.best_metric);
      if (it == m.end()) return m;
      const bool better = !st.has_best || (cfg_.best_mode == "max" ? it->second > st.best_metric
                                                                   : it->second < st.best_metric);
      if (better) {
        st.best_metric = it->second;
        st.has_best = true;
        save(true);
        improved = true;
      }
      return m;
    };
    bool improved = false;
    // Early stopping: count evaluations without a new best (kept in checkpoints).
    auto stop_early = [&](bool improved_now) {
      st.evals_since_best = improved_now ? 0 : st.evals_since_best + 1;
      const bool stop = cfg_.early_stopping > 0 && st.evals_since_best >= cfg_.early_stopping;
      if (stop)
        log::info("early stopping at step ", st.step, ": ", st.evals_since_best,
                  " evaluations without a better val ", cfg_.best_metric);
      return stop;
    };

    install_stop_handlers();
    double first_step_s = -1, timed_step_s = 0;  // for summary.json: startup and step cost
    int64_t timed_steps = 0, skipped_steps = 0;
    double window_loss = 0;
    int64_t window_n = 0, window_samples = 0;
    auto window_t0 = Clock::now();
    bool early_stop = false;
    report::ProgressBar progress(total, st.step);
    progress_ptr = &progress;
    model->train();
    while (st.step < total && !early_stop) {
      loader.start_epoch(st.epoch);
      loader.skip(st.batch_in_epoch);
      bool epoch_done = false;
      while (st.step < total && !early_stop) {
        // One optimizer step: the mean gradient of up to k micro-batches.
        const int64_t step = st.step;
        const auto step_t0 = Clock::now();
        const double lr =
            c.optimizer.lr * lr_factor(*schedule, c.scheduler.warmup_steps, step, total);
        for (auto& group : optimizer->param_groups()) group.options().set_lr(lr);
        optimizer->zero_grad();
        int64_t micro = 0, samples = 0;
        double loss_sum = 0;
        std::string nonfinite;
        data::Batch b;
        hook.step = step;
        hook.epoch = st.epoch;
        while (micro < k && loader.next(b)) {
          b.inputs = b.inputs.to(ctx.device());
          b.targets = b.targets.to(ctx.device());
          hook.batch = &b;
          for (const auto& cb : callbacks) cb->on_batch(b, hook);
          const auto& inputs = b.inputs;
          at::Tensor out;
          {
            Autocast autocast(ctx.device(), bf16);
            out = model->forward(inputs);
          }
          out = out.to(at::kFloat);  // the loss in fp32 whatever the forward ran in
          auto loss = task->loss(out, b.targets);
          hook.outputs = &out;
          hook.loss = &loss;
          for (const auto& cb : callbacks) {
            auto extra = cb->extra_loss(*model, hook);
            if (extra.defined()) loss = loss + extra.to(at::kFloat);
          }
          hook.outputs = hook.loss = nullptr;
          hook.batch = nullptr;
          const double loss_v = loss.item<double>();
          if (!std::isfinite(loss_v) && nonfinite.empty()) {
            nonfinite = detail::concat(
                "loss ", loss_v, " at step ", step, " (epoch ", st.epoch,
                "); non-finite values: ", (~out.isfinite()).sum().item<int64_t>(), " of ",
                out.numel(), " model outputs, ", (~inputs.isfinite()).sum().item<int64_t>(), " of ",
                inputs.numel(), " inputs");
          }
          (loss / static_cast<double>(k)).backward();
          loss_sum += loss_v;
          samples += b.size();
          ++micro;
          ++st.batch_in_epoch;
        }
        if (micro == 0) {
          epoch_done = true;
          break;
        }
        if (micro < k) {  // the epoch's last, shorter accumulation: still the mean gradient
          torch::NoGradGuard no_grad;
          for (auto& p : model->parameters())
            if (p.grad().defined())
              p.grad().mul_(static_cast<double>(k) / static_cast<double>(micro));
        }
        if (!nonfinite.empty()) {
          if (cfg_.nonfinite == "abort")
            throw std::runtime_error("training diverged: " + nonfinite +
                                     "; lower optimizer.lr, set trainer.grad_clip_norm, or "
                                     "trainer.nonfinite=skip");
          log::warn("skipping step: ", nonfinite);
          ++skipped_steps;
        } else {
          for (const auto& cb : callbacks) cb->after_backward(*model, hook);
          if (cfg_.grad_clip_norm > 0)
            torch::nn::utils::clip_grad_norm_(model->parameters(), cfg_.grad_clip_norm);
          optimizer->step();
          window_loss += loss_sum / static_cast<double>(micro);
          ++window_n;
        }
        if (first_step_s < 0) {
          first_step_s = seconds_since_process_start();
        } else {
          timed_step_s += seconds_since(step_t0);
          ++timed_steps;
        }
        ++st.step;
        hook.step = st.step;
        if (nonfinite.empty())
          for (const auto& cb : callbacks) cb->after_step(*model, hook);
        window_samples += samples;
        progress.update(
            st.step, loss_sum / static_cast<double>(micro),
            static_cast<double>(window_samples) / std::max(1e-9, seconds_since(window_t0)));
        if (st.step % cfg_.log_every == 0 || st.step == total) {
          double rate =
              static_cast<double>(window_samples) / std::max(1e-9, seconds_since(window_t0));
          const double mean_loss = window_n ? window_loss / static_cast<double>(window_n) : NAN;
          record({{"step", st.step},
                  {"epoch", st.epoch},
                  {"split", "train"},
                  {"loss", mean_loss},
                  {"lr", lr},
                  {"samples_per_s", rate},
                  {"skipped_steps", skipped_steps}});
          if (!progress.active())
            log::info("step ", st.step, "/", total, " epoch ", st.epoch, " loss ", mean_loss,
                      " lr ", lr, " ", static_cast<int64_t>(rate), " samples/s");
          window_loss = 0;
          window_n = window_samples = 0;
          window_t0 = Clock::now();
        }
        if (cfg_.eval_every > 0 && st.step % cfg_.eval_every == 0 && st.step != total) {
          eval_and_track(improved);
          early_stop = stop_early(improved);
        }
        if (cfg_.checkpoint_every > 0 && st.step % cfg_.checkpoint_every == 0) save(false);
        if (stop_requested()) {
          auto where = save(false);
          log::info("stopped at step ", st.step, "; checkpoint ", where.string(),
                    "; continue with: sculpt train <config> run.resume=auto");
          FitResult stopped;
          stopped.steps = st.step;
          stopped.interrupted = true;
          stopped.time_s = seconds_since(t0);
          return stopped;
        }
      }
      if (!epoch_done) break;
      ++st.epoch;
      st.batch_in_epoch = 0;
      if (st.step == total) break;
      if (cfg_.eval_every == 0) {
        eval_and_track(improved);
        early_stop = stop_early(improved);
      }
      if (cfg_.checkpoint_every == 0) save(false);
    }
    const int64_t step = st.step;
    hook.step = step;
    hook.epoch = st.epoch;
    for (const auto& cb : callbacks) cb->finalize(*model, hook);
    auto final_val = eval_and_track(improved);
    if (!improved) save(false);  // the final state is always the latest checkpoint

    FitResult result;
    result.steps = step;
    result.final_metrics["val"] = final_val;
    if (parts.test)
      result.final_metrics["test"] =
          evaluate(*model, *task, *parts.test, c.data, ctx.device(), bf16);
    result.final_metrics["train"] =
        evaluate(*model, *task, split.train, c.data, ctx.device(), bf16);
    result.time_s = seconds_since(t0);
    nlohmann::json summary = {
        {"steps", step},
        {"time_s", result.time_s},
        {"model", {{"params", model->parameter_count()}, {"bytes", model->parameter_bytes()}}},
        {"config_hash", c.hash()},
        {"time_to_first_step_s", first_step_s},
        {"skipped_steps", skipped_steps},
        {"early_stopped", early_stop},
        {"mean_step_s", timed_steps ? timed_step_s / static_cast<double>(timed_steps) : 0.0}};
    for (const auto& [split_name, m] : result.final_metrics)
      for (const auto& [k, v] : m) summary["final"][split_name][k] = v;
    if (!callbacks.empty()) {
      summary["compression"] = nlohmann::json::array();
      for (const auto& cb : callbacks)
        summary["compression"].push_back({{"pass", cb->name()}, {"summary", cb->summary()}});
    }
    io::save_safetensors((ctx.dir() / "model.safetensors").string(), model->state_tensors(),
                         {{"sculpt_config_hash", c.hash()}, {"sculpt_model", c.model.name}});
    io::write_file_atomic((ctx.dir() / "summary.json").string(), summary.dump(2) + "\n");
    report::write_html_report(ctx.dir().string(), "Sculpt run " + c.run.name);
    return result;
  }

 private:
  config::TrainerConfig cfg_;
};

}  // namespace

void register_builtin_trainers(TrainerRegistry& r) {
  r.add("standard", "supervised loop: epochs/max_steps, lr schedule, clipping, eval, metrics.jsonl",
        [](const config::TrainerConfig& c) { return std::make_unique<StandardTrainer>(c); });
}

}  // namespace sculpt::trainers
