#include "trainers/train_loop.h"

#include <torch/torch.h>

#include "core/data/loader.h"
#include "core/io/atomic_file.h"
#include "core/logging/logging.h"
#include "core/report/progress.h"
#include "core/run/interrupt.h"
#include "trainers/callback_state.h"
#include "trainers/callbacks/builtin.h"
#include "trainers/sam.h"
#include "trainers/strategies/step_strategy.h"

namespace sculpt::trainers {

TrainLoop::TrainLoop(LoopParts parts) : p_(std::move(parts)), builtins_(builtin_loop_callbacks()) {}
TrainLoop::~TrainLoop() = default;

void TrainLoop::set_lr(double lr) {
  lr_ = lr;
  for (auto& group : p_.optimizer.param_groups()) group.options().set_lr(lr);
}

void TrainLoop::stop(bool interrupted) {
  stopping_ = true;
  (interrupted ? result_.interrupted : result_.early_stopped) = true;
}

std::filesystem::path TrainLoop::save(const TrainState& st, bool is_best) {
  // Rank 0 writes the run's checkpoints; under a pipeline, replica 0 of every stage its part.
  if (!p_.strategy.writes_checkpoints()) return {};
  return p_.store.save(p_.model, p_.optimizer, st, is_best,
                       [&](const std::filesystem::path& dir) {
                         save_callback_states(p_.callbacks, dir);
                         write_loop_state(dir);
                         if (p_.save_extra) p_.save_extra(dir);
                       });
}

// loop.json: the built-in callbacks' state and the skipped steps, so that a resumed run's
// metrics.jsonl continues exactly as the uninterrupted run's (e.g. a half-full logging window).
void TrainLoop::write_loop_state(const std::filesystem::path& dir) const {
  nlohmann::json callbacks = nlohmann::json::object();
  for (const auto& cb : builtins_)
    if (auto s = cb->state(); !s.is_null()) callbacks[cb->name()] = s;
  // metrics_bytes: metrics.jsonl's length now, where a resume into this run cuts it back to.
  const nlohmann::json j = {{"skipped_steps", result_.skipped_steps},
                            {"callbacks", callbacks},
                            {"metrics_bytes", metrics_mark_ >= 0 ? metrics_mark_ : p_.metrics.bytes()}};
  io::write_file_atomic((dir / "loop.json").string(), j.dump(2) + "\n");
}

void TrainLoop::read_loop_state(const std::filesystem::path& dir) {
  const auto file = dir / "loop.json";
  if (!std::filesystem::exists(file)) return;  // written before loop.json existed
  const nlohmann::json j = io::read_json_file(file.string());
  result_.skipped_steps = j.value("skipped_steps", int64_t{0});
  const auto callbacks = j.value("callbacks", nlohmann::json::object());
  for (const auto& cb : builtins_)
    if (callbacks.contains(cb->name())) cb->load_state(callbacks[cb->name()]);
}

std::map<std::string, double> TrainLoop::eval_and_record(const TrainState& st) {
  if (p_.val.size() == 0) return {};
  if (progress_) progress_->clear();
  auto m = p_.strategy.evaluate(p_.val);
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
  const bool better = !st.has_best || (p_.cfg.best_mode == config::BestMode::max ? it->second > st.best_metric
                                                                 : it->second < st.best_metric);
  if (better) {
    st.best_metric = it->second;
    st.has_best = true;
    save(st, true);
    improved = true;
  }
  return m;
}

// Epochs of steps; each step is one_step(). Between steps only the built-in callbacks act.
LoopResult TrainLoop::run(TrainState& st) {
  auto loader_options = data::LoaderOptions::for_training(p_.data, p_.loader_seed);
  loader_options.pad_shards = p_.ctx.config().distributed.uneven_data == config::UnevenData::pad;
  p_.strategy.begin(loader_options, p_.optimizer);
  data::Loader loader(p_.train, p_.data.batch_size, loader_options);
  st.world_size = loader_options.world_size;
  state_ = &st;
  result_ = {};
  stopping_ = false;
  for (const auto& cb : builtins_) cb->on_loop_begin(*this);
  if (!p_.resumed_from.empty()) read_loop_state(p_.resumed_from);
  p_.resumed_from.clear();  // a later run() of this loop starts fresh
  p_.model.train();
  while (st.step < p_.end_step && !stopping_) {
    loader.start_epoch(st.epoch);
    loader.skip(st.batch_in_epoch);
    bool epoch_done = false;
    while (st.step < p_.end_step && !stopping_ && !epoch_done) epoch_done = !one_step(loader);
    if (!epoch_done) break;  // the run's last step, or a stop
    ++st.epoch;
    st.batch_in_epoch = 0;
    if (st.step == p_.end_step) break;
    for (const auto& cb : builtins_) cb->on_epoch_end(*this);
  }
  for (const auto& cb : builtins_) cb->on_loop_end(*this);
  progress_ = nullptr;
  state_ = nullptr;
  return result_;
}

// One optimizer step: the mean gradient of up to trainer.grad_accumulation micro-batches.
// Order: built-in on_step_begin (the LR) -> the strategy's forwards and backwards (the passes'
// on_batch and extra_loss; with optimizer.sam_rho again at the perturbed weights) -> the ranks
// agree on the flags -> built-in on_backward_end (the non-finite guard) -> the passes'
// after_backward, clip, optimizer step -> the passes' after_step -> built-in on_step_end
// (progress, metrics, evaluation, checkpoint, signal).
bool TrainLoop::one_step(data::Loader& loader) {
  auto& st = *state_;
  const auto t0 = Clock::now();
  p_.hook.step = st.step;
  p_.hook.epoch = st.epoch;
  for (const auto& cb : builtins_) cb->on_step_begin(*this);
  p_.optimizer.zero_grad();
  StepResult s;
  p_.strategy.forward_backward(loader, p_.hook, p_.callbacks, st, s);
  if (s.micro == 0) return false;
  to_mean_gradient(s.micro);
  if (p_.ctx.config().optimizer.sam_rho > 0) sharpness_aware_gradient(s);
  s.stop_requested = stop_requested();
  agree_on_flags(s);
  for (const auto& cb : builtins_) cb->on_backward_end(*this, s);
  if (!s.skipped) update();
  if (result_.first_step_s < 0) {
    result_.first_step_s = seconds_since_process_start();
  } else {
    result_.timed_step_s += seconds_since(t0);
    ++result_.timed_steps;
  }
  ++st.step;
  p_.hook.step = st.step;
  if (!s.skipped)
    for (const auto& cb : p_.callbacks) cb->after_step(p_.model, p_.hook);
  for (const auto& cb : builtins_) cb->on_step_end(*this, s);
  return true;
}

// The epoch's last, shorter accumulation (micro < trainer.grad_accumulation micro-batches, each
// backward of loss / k): still the mean gradient.
void TrainLoop::to_mean_gradient(int64_t micro) {
  const int64_t k = p_.cfg.grad_accumulation;
  if (micro >= k) return;
  torch::NoGradGuard no_grad;
  for (auto& p : p_.model.parameters())
    if (p.grad().defined()) p.grad().mul_(static_cast<double>(k) / static_cast<double>(micro));
}

// optimizer.sam_rho (trainers/sam.h): the gradient of the step's micro-batches at w + e replaces
// the one at w; the weights and the model's buffers are w's again afterwards, and the step's
// logged loss stays the loss at w. It runs before the ranks agree on the flags, so that a
// non-finite loss at w + e meets the guard like any other; whether it runs at all depends only
// on the reduced gradient, the same on every rank, so the second backward's DDP reduction
// happens on all ranks or none. The passes' hooks: on_batch is not called again (the same rows;
// a pass counting batches counts the step's once), extra_loss is (it is part of the loss whose
// gradient SAM takes), and after_backward and after_step run once, on the final gradient at w:
// what they add to or drop from it (EWC's penalty, freeze) acts at w, as weight decay does.
void TrainLoop::sharpness_aware_gradient(StepResult& s) {
  std::vector<at::Tensor> trained;
  for (auto& group : p_.optimizer.param_groups())
    for (auto& p : group.params()) trained.push_back(p);
  const auto& o = p_.ctx.config().optimizer;
  SamPerturbation e(trained, o.sam_rho, o.sam_adaptive);
  if (e.empty()) return;  // no gradient to climb along: the step keeps the one at w
  BufferSnapshot buffers(p_.model.buffers());
  p_.optimizer.zero_grad();
  StepResult again;
  p_.strategy.forward_backward_again(p_.hook, p_.callbacks, *state_, again);
  to_mean_gradient(again.micro);
  e.restore();
  buffers.restore();
  if (s.nonfinite.empty()) s.nonfinite = again.nonfinite;
}

// The ranks agree on skipping and stopping, or their collectives would part ways.
void TrainLoop::agree_on_flags(StepResult& s) {
  auto& comm = p_.ctx.collectives();
  if (!comm.distributed()) return;
  auto flags = at::tensor({s.nonfinite.empty() ? 0.0f : 1.0f, s.stop_requested ? 1.0f : 0.0f});
  comm.all_reduce(flags, ReduceOp::max, "the step's stop and non-finite flags");
  if (flags[0].item<float>() > 0 && s.nonfinite.empty())
    s.nonfinite = detail::concat("a non-finite loss on another rank at step ", state_->step);
  s.stop_requested = flags[1].item<float>() > 0;
}

void TrainLoop::update() {
  for (const auto& cb : p_.callbacks) cb->after_backward(p_.model, p_.hook);
  if (p_.cfg.grad_clip_norm > 0) p_.strategy.clip_grad_norm(p_.cfg.grad_clip_norm);
  p_.optimizer.step();
}

}  // namespace sculpt::trainers
