#include "trainers/fit_pieces.h"

#include <torch/torch.h>

#include <cerrno>
#include <cstring>

#include "core/data/loader.h"
#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/logging/logging.h"
#include "core/optim/optimizers.h"
#include "core/report/html_report.h"
#include "core/report/tensorboard.h"
#include "trainers/callback_state.h"
#include "trainers/trainer.h"

namespace sculpt::trainers {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

StepContext make_hook(RunContext& ctx, const data::Dataset& train,
                      std::shared_ptr<const tasks::Task> task) {
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
  hook.task = std::move(task);
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

at::Tensor add_extra_losses(at::Tensor base, const Callbacks& callbacks, models::Model& model,
                            const StepContext& hook) {
  for (const auto& cb : callbacks) {
    auto extra = cb->extra_loss(model, hook);
    if (extra.defined()) base = base.defined() ? base + extra.to(at::kFloat) : extra.to(at::kFloat);
  }
  return base;
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

TrainState resume_from(const std::filesystem::path& dir, const config::Config& c,
                       models::Model& model, torch::optim::Optimizer& optimizer,
                       const Callbacks& callbacks, bool same_config) {
  load_callback_states(callbacks, dir);
  TrainState st = CheckpointStore::load(dir, model, optimizer);
  if (same_config && st.config_hash != c.hash())
    log::warn("resuming from a checkpoint written with another config (hash ", st.config_hash,
              ", now ", c.hash(), ")");
  st.config_hash = c.hash();
  return st;
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
                          ctx.config().distributed.uneven_data == config::UnevenData::pad);
}

namespace {

// Whether `dir` lies inside `run_dir` (a checkpoint of this run, not one copied from elsewhere).
bool inside(const std::filesystem::path& dir, const std::filesystem::path& run_dir) {
  std::error_code ec;
  const auto d = std::filesystem::weakly_canonical(dir, ec).string();
  const auto r = std::filesystem::weakly_canonical(run_dir, ec).string();
  return !ec && d.size() > r.size() && d.compare(0, r.size(), r) == 0 && d[r.size()] == '/';
}

}  // namespace

MetricsLog::MetricsLog(const std::filesystem::path& run_dir,
                       const std::optional<std::filesystem::path>& resumed_from, bool tensorboard,
                       Clock::time_point t0, bool write)
    : t0_(t0) {
  if (!write) return;
  const auto file = run_dir / "metrics.jsonl";
  std::error_code ec;
  if (resumed_from && inside(*resumed_from, run_dir) &&
      std::filesystem::exists(*resumed_from / "loop.json")) {
    const auto loop = io::read_json_file((*resumed_from / "loop.json").string());
    const auto at = loop.value("metrics_bytes", int64_t{-1});
    const auto size = static_cast<int64_t>(std::filesystem::file_size(file, ec));
    if (at >= 0 && !ec && size > at) {
      std::filesystem::resize_file(file, static_cast<uintmax_t>(at), ec);
      if (ec)
        throw std::runtime_error(detail::concat("cannot cut ", file.string(), " back to the ",
                                                at, " bytes of ", resumed_from->string(), ": ",
                                                ec.message()));
      log::info("metrics.jsonl: cut back to the ", at, " bytes written at ",
                resumed_from->string(), " (", size - at, " bytes were written after it)");
    }
  }
  file_ = file;
  out_.open(file, resumed_from ? std::ios::app : std::ios::trunc);
  if (!out_)
    throw std::runtime_error(detail::concat("cannot open ", file.string(), ": ",
                                            std::strerror(errno)));
  if (resumed_from) {
    const auto size = std::filesystem::file_size(file, ec);
    bytes_ = ec ? 0 : static_cast<int64_t>(size);
  }
  if (tensorboard)
    events_ = std::make_unique<report::EventWriter>((run_dir / "tensorboard").string());
}

MetricsLog::~MetricsLog() = default;

void MetricsLog::record(nlohmann::json j) {
  if (!out_.is_open()) return;
  j["elapsed_s"] = seconds_since(t0_);
  const std::string line = j.dump() + "\n";
  out_ << line;
  out_.flush();
  if (!out_)  // a full disk or a file-size limit: end the run rather than lose records silently
    throw std::runtime_error(detail::concat("cannot write ", file_.string(), ": ",
                                            std::strerror(errno)));
  bytes_ += static_cast<int64_t>(line.size());
  if (!events_) return;
  const std::string prefix = j["split"].get<std::string>() + "/";
  for (const auto& [key, value] : j.items())
    if (value.is_number() && key != "step" && key != "epoch" && key != "increment")
      events_->add_scalar(prefix + key, value.get<double>(), j["step"].get<int64_t>());
  events_->flush();
}

}  // namespace sculpt::trainers
