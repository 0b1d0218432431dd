#include "trainers/train_loop.h"

#include <torch/torch.h>

#include <cmath>

#include "core/data/loader.h"
#include "core/error.h"
#include "core/logging/logging.h"
#include "core/models/model.h"
#include "core/optim/optimizers.h"
#include "core/run/interrupt.h"
#include "core/tasks/task.h"
#include "distributed/ddp.h"
#include "trainers/callback_state.h"
#include "core/io/atomic_file.h"
#include "core/report/html_report.h"
#include "trainers/run_parts.h"
#include "trainers/trainer.h"

namespace sculpt::trainers {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

StepContext make_hook(RunContext& ctx, const data::Dataset& train) {
  const auto& c = ctx.config();
  StepContext hook;
  hook.device = ctx.device();
  hook.rank = ctx.rank();
  hook.world_size = ctx.world_size();
  hook.collectives = &ctx.collectives();
  hook.run = &ctx;
  hook.data = &train.spec();
  hook.train = &train;
  hook.augmented = c.data.random_crop_padding > 0 || c.data.hflip;
  // Facts for the passes (StepContext), so that none reads the config.
  hook.seed = static_cast<uint64_t>(c.run.seed);
  hook.eval_loading = data::LoaderOptions::for_evaluation(c.data);
  hook.batch_size = c.data.batch_size;
  hook.pipelined = c.distributed.pipeline.stages > 1;
  hook.optimizer_facts.lr = c.optimizer.lr;
  const auto* sgd = dynamic_cast<const SgdOptions*>(c.optimizer.options.get());
  hook.optimizer_facts.momentum = sgd ? sgd->momentum : 0.0;
  hook.optimizer_facts.adaptive =
      dynamic_cast<const AdamOptions*>(c.optimizer.options.get()) != nullptr;
  hook.task = tasks::task_registry().create(c.task.name, c.task, train.spec());
  hook.new_model = [model = c.model, spec = train.spec()] {
    return std::shared_ptr<models::Model>(
        models::model_registry().create(model.name, model, spec));
  };
  return hook;
}

at::Tensor attach_sample_rows(const data::Dataset& train) {
  return at::arange(std::min<int64_t>(train.size(), 4), at::kLong);
}

void attach_callbacks(const Callbacks& callbacks, models::Model& model, StepContext& hook,
                      const data::Dataset& train, const at::Tensor& stage_inputs) {
  if (callbacks.empty()) return;
  data::Batch sample;
  auto rows = attach_sample_rows(train);
  sample.inputs = (stage_inputs.defined() ? stage_inputs : train.input_rows(rows)).to(hook.device);
  sample.targets = train.target_rows(rows).to(hook.device);
  sample.rows = rows;
  hook.batch = &sample;
  for (const auto& cb : callbacks) cb->attach(model, hook);
  hook.batch = nullptr;
  model.to(hook.device);
}

std::unique_ptr<torch::optim::Optimizer> build_optimizer(const config::Config& c,
                                                         models::Model& model,
                                                         const Callbacks& callbacks) {
  std::vector<std::pair<std::string, at::Tensor>> named;
  for (const auto& p : model.named_parameters()) named.emplace_back(p.key(), p.value());
  for (size_t i = 0; i < callbacks.size(); ++i) {
    const auto extra = callbacks[i]->parameters();
    for (size_t j = 0; j < extra.size(); ++j)
      named.emplace_back(callbacks[i]->name() + "." + std::to_string(i) + "." + std::to_string(j),
                         extra[j]);
  }
  return optimizer_registry().create(
      c.optimizer.name, split_for_weight_decay(named, c.optimizer.no_decay_bias_norm),
      c.optimizer);
}

int64_t total_steps(const config::TrainerConfig& t, const config::DataConfig& d, int64_t rows,
                    const std::string& what, int64_t* steps_per_epoch) {
  const int64_t batches = d.drop_last ? rows / d.batch_size
                                      : (rows + d.batch_size - 1) / d.batch_size;
  SCULPT_CHECK(batches > 0, what, ": the training split has ", rows,
               " samples, fewer than one batch of ", d.batch_size, " with data.drop_last=true");
  const int64_t k = t.grad_accumulation;
  if (steps_per_epoch) *steps_per_epoch = (batches + k - 1) / k;
  return t.max_steps > 0 ? t.max_steps : t.epochs * ((batches + k - 1) / k);
}

nlohmann::json run_summary(const RunContext& ctx, models::Model& model, const FitResult& result,
                           const LoopResult& loop, const Callbacks& callbacks) {
  const auto& c = ctx.config();
  nlohmann::json summary = {
      {"steps", result.steps},
      {"time_s", result.time_s},
      {"model", {{"params", model.parameter_count()}, {"bytes", model.parameter_bytes()}}},
      {"config_hash", c.hash()},
      {"time_to_first_step_s", loop.first_step_s},
      {"skipped_steps", loop.skipped_steps},
      {"early_stopped", loop.early_stopped},
      {"mean_step_s",
       loop.timed_steps ? loop.timed_step_s / static_cast<double>(loop.timed_steps) : 0.0}};
  for (const auto& [split_name, m] : result.final_metrics)
    for (const auto& [k, v] : m) summary["final"][split_name][k] = v;
  if (!callbacks.empty()) {
    summary["compression"] = nlohmann::json::array();
    for (const auto& cb : callbacks)
      summary["compression"].push_back({{"pass", cb->name()}, {"summary", cb->summary()}});
  }
  return summary;
}

FitResult interrupted_at(int64_t steps, Clock::time_point t0) {
  FitResult stopped;
  stopped.steps = steps;
  stopped.interrupted = true;
  stopped.time_s = seconds_since(t0);
  return stopped;
}

void write_run_outputs(const RunContext& ctx, models::Model& model,
                       const nlohmann::json& summary) {
  if (!ctx.writes_files()) return;  // rank 0 writes the run's files
  write_run_outputs(ctx, model.state_tensors(), summary);
}

void write_run_outputs(const RunContext& ctx, const io::NamedTensors& weights,
                       const nlohmann::json& summary) {
  if (!ctx.writes_files()) return;
  const auto& c = ctx.config();
  io::save_safetensors((ctx.dir() / "model.safetensors").string(), weights,
                       {{"sculpt_config_hash", c.hash()}, {"sculpt_model", c.model.name}});
  io::write_file_atomic((ctx.dir() / "summary.json").string(), summary.dump(2) + "\n");
  report::write_html_report(ctx.dir().string(), "Sculpt run " + c.run.name);
}

void resume_at_world_size(TrainState& st, int world_size, int64_t batch_size,
                          int64_t steps_per_epoch, int64_t grad_accumulation, bool fixed_steps) {
  if (st.world_size == world_size) return;
  const int64_t samples = st.batch_in_epoch * batch_size * st.world_size;
  const int64_t batch = samples / (batch_size * world_size);
  log::info("the checkpoint was written by ", st.world_size, " rank(s), this run has ",
            world_size, ": epoch ", st.epoch, " continues after ", samples, " samples (batch ",
            batch, " of each rank's shard)");
  st.batch_in_epoch = batch;
  if (!fixed_steps)
    st.step = st.epoch * steps_per_epoch + (batch + grad_accumulation - 1) / grad_accumulation;
  st.world_size = world_size;
}

void verify_ranks_agree(Collectives& comm, models::Model& model, const Callbacks& callbacks) {
  if (!comm.distributed()) return;
  std::vector<std::pair<std::string, at::Tensor>> named;
  for (const auto& [k, t] : model.state_tensors()) named.emplace_back("model " + k, t);
  std::string signature;
  for (size_t i = 0; i < callbacks.size(); ++i) {
    const auto s = callbacks[i]->state_dict();
    const std::string who = callbacks[i]->name() + "." + std::to_string(i);
    for (const auto& [k, t] : s.tensors) named.emplace_back(who + " " + k, t);
    signature += who + " " + s.meta.dump() + "\n";
  }
  std::vector<at::Tensor> flat;
  for (const auto& [k, t] : named) {
    signature += k + " " + c10::toString(t.scalar_type()) + " " + c10::str(t.sizes()) + "\n";
    flat.push_back(t.detach().to(at::kCPU, at::kDouble).reshape(-1));
  }
  const auto signatures = comm.all_gather(signature, "the model and pass state layout");
  std::string problems;
  for (size_t r = 1; r < signatures.size(); ++r)
    if (signatures[r] != signatures[0])
      problems += detail::concat("; rank ", r, ": other tensors or pass metadata than rank 0");
  if (problems.empty()) {
    const auto mine = flat.empty() ? at::zeros({0}, at::kDouble) : at::cat(flat);
    auto ref = mine.clone();
    comm.broadcast(ref, 0, "the model and pass state of rank 0");
    int64_t differ = 0, offset = 0;
    std::string first;
    for (size_t i = 0; i < named.size(); ++i) {
      const int64_t n = flat[i].numel();
      if (!at::equal(mine.narrow(0, offset, n), ref.narrow(0, offset, n))) {
        if (differ++ < 3) first += (first.empty() ? "" : ", ") + named[i].first;
      }
      offset += n;
    }
    const auto reports = comm.all_gather(
        differ ? detail::concat(differ, " tensor(s) differ from rank 0 (", first, ")") : "",
        "the state comparison");
    for (size_t r = 1; r < reports.size(); ++r)
      if (!reports[r].empty()) problems += detail::concat("; rank ", r, ": ", reports[r]);
  }
  if (!problems.empty())
    throw std::runtime_error("distributed.verify_state: the ranks disagree after training" +
                             problems);
  log::info("distributed.verify_state: all ", comm.world_size(), " ranks agree on ", named.size(),
            " tensors of model and pass state");
}

int64_t rows_per_rank(const RunContext& ctx, int64_t rows) {
  return data::shard_size(rows, ctx.world_size(),
                          ctx.config().distributed.uneven_data == "pad");
}

MetricsLog::MetricsLog(const std::filesystem::path& run_dir, bool append, bool tensorboard,
                       Clock::time_point t0, bool write)
    : t0_(t0) {
  if (!write) return;
  out_.open(run_dir / "metrics.jsonl", append ? std::ios::app : std::ios::trunc);
  if (tensorboard)
    events_ = std::make_unique<report::EventWriter>((run_dir / "tensorboard").string());
}

void MetricsLog::record(nlohmann::json j) {
  if (!out_.is_open()) return;
  j["elapsed_s"] = seconds_since(t0_);
  out_ << j.dump() << "\n";
  out_.flush();
  if (!events_) return;
  const std::string prefix = j["split"].get<std::string>() + "/";
  for (const auto& [key, value] : j.items())
    if (value.is_number() && key != "step" && key != "epoch" && key != "increment")
      events_->add_scalar(prefix + key, value.get<double>(), j["step"].get<int64_t>());
  events_->flush();
}

std::filesystem::path TrainLoop::save(const TrainState& st, bool is_best) {
  // Rank 0 writes the run's checkpoints; under a pipeline, replica 0 of every stage its part.
  if (!(p_.pipeline ? p_.pipeline->writes_checkpoints() : p_.ctx.writes_files())) return {};
  return p_.store.save(p_.model, p_.optimizer, st, is_best,
                       [&](const std::filesystem::path& dir) {
                         save_callback_states(p_.callbacks, dir);
                         if (p_.save_extra) p_.save_extra(dir);
                       });
}

std::map<std::string, double> TrainLoop::eval_and_record(const TrainState& st) {
  if (p_.val.size() == 0) return {};
  if (progress_) progress_->clear();
  // Under DDP each rank evaluates its shard of the val data; the sums are added over the ranks.
  auto m = p_.pipeline ? pipeline_evaluate(*p_.pipeline, p_.model, p_.task, p_.val, p_.data,
                                           p_.ctx.device(), p_.bf16)
                       : evaluate(p_.model, p_.task, p_.val, p_.data, p_.ctx.device(), p_.bf16,
                                  p_.map_outputs,
                                  p_.ctx.data_parallel() ? &p_.ctx.collectives() : nullptr);
  nlohmann::json j = {{"step", st.step}, {"epoch", st.epoch}, {"split", "val"}};
  j.update(p_.record_extra);
  std::string line;
  for (const auto& [k, v] : m) {
    j[k] = v;
    line += " " + k + "=" + std::to_string(v);
  }
  p_.metrics.record(j);
  log::info("step ", st.step, " val", line);
  return m;
}

std::map<std::string, double> TrainLoop::eval_and_track(TrainState& st, bool& improved) {
  improved = false;
  auto m = eval_and_record(st);
  auto it = m.find(p_.cfg.best_metric);
  if (it == m.end()) return m;
  const bool better = !st.has_best || (p_.cfg.best_mode == "max" ? it->second > st.best_metric
                                                                 : it->second < st.best_metric);
  if (better) {
    st.best_metric = it->second;
    st.has_best = true;
    save(st, true);
    improved = true;
  }
  return m;
}

namespace {
// DDP over what the optimizer trains (the model's parameters and those passes added), named
// for error messages; the model's buffers follow rank 0's.
std::unique_ptr<distributed::DataParallel> make_ddp(RunContext& ctx, Collectives& comm,
                                                   models::Model& model,
                                                   torch::optim::Optimizer& optimizer) {
  std::map<const void*, std::string> names;
  for (const auto& p : model.named_parameters()) names[p.value().unsafeGetTensorImpl()] = p.key();
  std::vector<at::Tensor> params;
  std::vector<std::string> param_names;
  for (auto& group : optimizer.param_groups())
    for (auto& p : group.params()) {
      auto it = names.find(p.unsafeGetTensorImpl());
      params.push_back(p);
      param_names.push_back(it != names.end() ? it->second
                                              : "pass parameter " + std::to_string(params.size()));
    }
  const auto& dc = ctx.config().distributed;
  return std::make_unique<distributed::DataParallel>(params, param_names, model.buffers(), comm,
                                                     distributed::DdpOptions::from(dc));
}
}  // namespace

LoopResult TrainLoop::run(TrainState& st) {
  const auto& cfg = p_.cfg;
  auto& model = p_.model;
  auto& hook = p_.hook;
  const auto& callbacks = p_.callbacks;
  const auto& c = p_.ctx.config();
  const auto device = p_.ctx.device();
  auto& comm = p_.ctx.collectives();
  auto loader_options = data::LoaderOptions::for_training(p_.data, p_.loader_seed);
  PipelineStage* const pipe = p_.pipeline;
  // Under a pipeline every stage of a replica reads the replica's batches (the first uses the
  // inputs, the last the targets) and DDP reduces within each stage's replicas.
  loader_options.rank = pipe ? static_cast<int>(pipe->replica) : comm.rank();
  loader_options.world_size = pipe ? static_cast<int>(pipe->replicas) : comm.world_size();
  loader_options.pad_shards = c.distributed.uneven_data == "pad";
  data::Loader loader(p_.train, p_.data.batch_size, loader_options);
  std::unique_ptr<distributed::DataParallel> ddp;
  if (pipe && pipe->data)
    ddp = make_ddp(p_.ctx, *pipe->data, model, p_.optimizer);
  else if (!pipe && p_.ctx.data_parallel())
    ddp = make_ddp(p_.ctx, comm, model, p_.optimizer);
  st.world_size = loader_options.world_size;
  const int64_t k = cfg.grad_accumulation;
  const int64_t begin = p_.begin_step, end = p_.end_step, total = end - begin;
  LoopResult r;
  bool improved = false;
  // Early stopping: count evaluations without a new best (kept in checkpoints).
  auto stop_early = [&](bool improved_now) {
    st.evals_since_best = improved_now ? 0 : st.evals_since_best + 1;
    const bool stop = cfg.early_stopping > 0 && st.evals_since_best >= cfg.early_stopping;
    if (stop)
      log::info("early stopping at step ", st.step, ": ", st.evals_since_best,
                " evaluations without a better val ", cfg.best_metric);
    return stop;
  };
  install_stop_handlers();
  double window_loss = 0;
  int64_t window_n = 0, window_samples = 0;
  auto window_t0 = Clock::now();
  report::ProgressBar progress(end, st.step);
  progress_ = &progress;
  struct ClearProgress {
    report::ProgressBar*& p;
    ~ClearProgress() { p = nullptr; }
  } clear_progress{progress_};
  model.train();
  while (st.step < end && !r.early_stopped) {
    loader.start_epoch(st.epoch);
    loader.skip(st.batch_in_epoch);
    bool epoch_done = false;
    while (st.step < end && !r.early_stopped) {
      // One optimizer step: the mean gradient of up to k micro-batches.
      const int64_t step = st.step;
      const auto step_t0 = Clock::now();
      const double lr =
          c.optimizer.lr * lr_factor(p_.schedule, c.scheduler.warmup_steps, step - begin, total);
      for (auto& group : p_.optimizer.param_groups()) group.options().set_lr(lr);
      p_.optimizer.zero_grad();
      int64_t micro = 0, samples = 0;
      double loss_sum = 0;
      std::string nonfinite;
      data::Batch b;
      hook.step = step;
      hook.epoch = st.epoch;
      if (ddp) ddp->broadcast_buffers();
      if (pipe && loader.next(b)) {
        // One batch in micro-batches through the stages; the passes' own terms (weight
        // penalties) join each stage's final backward.
        hook.batch = &b;
        for (const auto& cb : callbacks) cb->on_batch(b, hook);
        const auto extra = [&] {
          at::Tensor sum;
          for (const auto& cb : callbacks) {
            auto e = cb->extra_loss(model, hook);
            if (e.defined()) sum = sum.defined() ? sum + e.to(at::kFloat) : e.to(at::kFloat);
          }
          return sum;
        };
        const auto s = pipeline_step(*pipe, model, p_.task, b, device, p_.bf16, ddp.get(), extra);
        hook.batch = nullptr;
        // Every stage logs the replica's loss: the last stage's plus every stage's extra term.
        auto shared = at::tensor({s.loss, s.extra_loss}, at::kDouble);
        pipe->pipe->all_reduce(shared, ReduceOp::sum, "the step's loss");
        loss_sum = shared[0].item<double>() + shared[1].item<double>();
        if (!std::isfinite(loss_sum))
          nonfinite = detail::concat("loss ", loss_sum, " at step ", step, " (epoch ", st.epoch, ")");
        samples = pipe->first() ? b.size() : 0;
        micro = 1;
        ++st.batch_in_epoch;
      }
      while (!pipe && micro < k && loader.next(b)) {
        // DDP reduces in the step's last micro-batch only (no_sync before it).
        const bool sync = micro + 1 == k || loader.remaining() == 0;
        if (ddp) ddp->begin_backward(sync);
        b.inputs = b.inputs.to(device);
        b.targets = b.targets.to(device);
        hook.batch = &b;
        for (const auto& cb : callbacks) cb->on_batch(b, hook);
        const auto& inputs = b.inputs;
        at::Tensor out;
        {
          Autocast autocast(device, p_.bf16);
          out = model.forward(inputs);
        }
        out = out.to(at::kFloat);  // the loss in fp32 whatever the forward ran in
        if (p_.map_outputs) out = p_.map_outputs(out);
        auto loss = p_.task.loss(out, b.targets);
        hook.outputs = &out;
        hook.loss = &loss;
        for (const auto& cb : callbacks) {
          auto extra = cb->extra_loss(model, hook);
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
        if (ddp && sync) ddp->finish_backward();
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
        for (auto& p : model.parameters())
          if (p.grad().defined())
            p.grad().mul_(static_cast<double>(k) / static_cast<double>(micro));
      }
      // The ranks agree on skipping and stopping, or their collectives would part ways.
      bool stop = stop_requested();
      if (comm.distributed()) {
        auto flags = at::tensor({nonfinite.empty() ? 0.0f : 1.0f, stop ? 1.0f : 0.0f});
        comm.all_reduce(flags, ReduceOp::max, "the step's stop and non-finite flags");
        if (flags[0].item<float>() > 0 && nonfinite.empty())
          nonfinite = detail::concat("a non-finite loss on another rank at step ", step);
        stop = flags[1].item<float>() > 0;
      }
      if (!nonfinite.empty()) {
        if (cfg.nonfinite == "abort")
          throw std::runtime_error("training diverged: " + nonfinite +
                                   "; lower optimizer.lr, set trainer.grad_clip_norm, or "
                                   "trainer.nonfinite=skip");
        log::warn("skipping step: ", nonfinite);
        ++r.skipped_steps;
      } else {
        for (const auto& cb : callbacks) cb->after_backward(model, hook);
        if (cfg.grad_clip_norm > 0 && pipe)
          clip_grad_norm(*pipe, model, cfg.grad_clip_norm);  // the norm over every stage
        else if (cfg.grad_clip_norm > 0)
          torch::nn::utils::clip_grad_norm_(model.parameters(), cfg.grad_clip_norm);
        p_.optimizer.step();
        window_loss += loss_sum / static_cast<double>(micro);
        ++window_n;
      }
      if (r.first_step_s < 0) {
        r.first_step_s = seconds_since_process_start();
      } else {
        r.timed_step_s += seconds_since(step_t0);
        ++r.timed_steps;
      }
      ++st.step;
      hook.step = st.step;
      if (nonfinite.empty())
        for (const auto& cb : callbacks) cb->after_step(model, hook);
      window_samples += samples;
      progress.update(
          st.step, loss_sum / static_cast<double>(micro),
          static_cast<double>(window_samples) / std::max(1e-9, seconds_since(window_t0)));
      if (st.step % cfg.log_every == 0 || st.step == end) {
        if (comm.distributed()) {  // the mean over the ranks, the samples of all
          auto w = at::tensor({window_loss, static_cast<double>(window_n),
                               static_cast<double>(window_samples)},
                              at::kDouble);
          comm.all_reduce(w, ReduceOp::sum, "the training metrics");
          window_loss = w[0].item<double>();
          window_n = static_cast<int64_t>(w[1].item<double>());
          window_samples = static_cast<int64_t>(w[2].item<double>());
        }
        double rate =
            static_cast<double>(window_samples) / std::max(1e-9, seconds_since(window_t0));
        const double mean_loss = window_n ? window_loss / static_cast<double>(window_n) : NAN;
        nlohmann::json j = {{"step", st.step},
                            {"epoch", st.epoch},
                            {"split", "train"},
                            {"loss", mean_loss},
                            {"lr", lr},
                            {"samples_per_s", rate},
                            {"skipped_steps", r.skipped_steps}};
        j.update(p_.record_extra);
        p_.metrics.record(j);
        if (!progress.active())
          log::info("step ", st.step, "/", end, " epoch ", st.epoch, " loss ", mean_loss, " lr ",
                    lr, " ", static_cast<int64_t>(rate), " samples/s");
        window_loss = 0;
        window_n = window_samples = 0;
        window_t0 = Clock::now();
      }
      if (cfg.eval_every > 0 && st.step % cfg.eval_every == 0 && st.step != end) {
        eval_and_track(st, improved);
        r.early_stopped = stop_early(improved);
      }
      if (cfg.checkpoint_every > 0 && st.step % cfg.checkpoint_every == 0) save(st, false);
      if (stop) {
        auto where = save(st, false);
        log::info("stopped at step ", st.step,
                  where.empty() ? "; rank 0 writes the checkpoint" : "; checkpoint ",
                  where.string(), "; continue with: sculpt train <config> run.resume=auto");
        r.interrupted = true;
        return r;
      }
    }
    if (!epoch_done) break;
    ++st.epoch;
    st.batch_in_epoch = 0;
    if (st.step == end) break;
    if (cfg.eval_every == 0) {
      eval_and_track(st, improved);
      r.early_stopped = stop_early(improved);
    }
    if (cfg.checkpoint_every == 0) save(st, false);
  }
  return r;
}

}  // namespace sculpt::trainers
