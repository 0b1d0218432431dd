#include "trainers/pipeline_stage.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "core/checkpoint/checkpoint.h"
#include "core/data/loader.h"
#include "core/error.h"
#include "core/logging/logging.h"
#include "core/models/model.h"
#include "core/run/collectives.h"
#include "core/run/run_context.h"
#include "core/tasks/task.h"
#include "distributed/ddp.h"
#include "distributed/pipeline.h"
#include "trainers/run_parts.h"

namespace sculpt::trainers {
namespace fs = std::filesystem;
namespace pp = distributed::pipeline;

PipelineStage::PipelineStage() = default;
PipelineStage::~PipelineStage() = default;
PipelineStage::PipelineStage(PipelineStage&&) noexcept = default;

Collectives& PipelineStage::data_collectives() const {
  return data ? *data : local_collectives();
}

bool pipelined(const config::Config& c) { return c.distributed.pipeline.stages > 1; }

namespace {
// Seconds of forward + backward of each block on its own input (the previous block's output
// for `x`), the median of 3 runs after a warm-up.
std::vector<double> block_seconds(models::Model& whole, at::Tensor x) {
  std::vector<double> out;
  for (size_t b = 0; b < whole.block_count(); ++b) {
    at::Tensor in = x.detach();
    if (in.is_floating_point()) in.requires_grad_(true);
    std::vector<double> runs;
    at::Tensor y;
    for (int r = 0; r < 4; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      y = whole.block(b).forward(in);
      if (y.requires_grad()) y.to(at::kFloat).square().mean().backward();
      runs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(runs.begin() + 1, runs.end());
    out.push_back(runs[2]);
    x = y.detach();
  }
  whole.zero_grad();
  return out;
}
}  // namespace

namespace {
// A cut between a block and another that uses its parameters would train two copies.
void check_shared_weights(const models::Model& whole, const pp::StageRanges& ranges,
                          const std::string& file) {
  const auto names = whole.block_names();
  auto stage_of = [&](const std::string& block) {
    for (size_t s = 0; s < ranges.size(); ++s)
      for (int64_t b = ranges[s].first; b < ranges[s].second; ++b)
        if (names[static_cast<size_t>(b)] == block) return static_cast<int64_t>(s);
    return int64_t{-1};
  };
  for (const auto& sw : whole.shared_weights())
    SCULPT_CHECK(stage_of(sw.owner) == stage_of(sw.user), file, ": distributed.pipeline: blocks ",
                 sw.owner, " and ", sw.user, " of model ", whole.name(), " share ", sw.what,
                 "; they would be in stages ", stage_of(sw.owner), " and ", stage_of(sw.user),
                 ", which is not supported (choose distributed.pipeline.cuts that keep them "
                 "together, or a checkpoint without tied weights)");
}
}  // namespace

std::unique_ptr<models::Model> make_stage(RunContext& ctx, models::Model& whole,
                                          at::Tensor& sample, PipelineStage& ps) {
  const auto& c = ctx.config();
  const auto& pc = c.distributed.pipeline;
  auto& world = ctx.collectives();
  const int64_t size = world.world_size(), p = pc.stages;
  SCULPT_CHECK(size % p == 0, c.source_file, ": distributed.pipeline.stages is ", p,
               " but the run has ", size,
               " process(es): the world must be stages x data-parallel replicas (start it with "
               "sculpt-run --nproc-per-node ", p, " or a multiple of it)");
  const auto names = whole.block_names();
  SCULPT_CHECK(static_cast<int64_t>(names.size()) >= p, c.source_file,
               ": distributed.pipeline.stages is ", p, " but model ", c.model.name, " has ",
               names.size(), " blocks (each stage needs one)");
  ps.stages = p;
  ps.replicas = size / p;
  ps.stage = world.rank() % p;
  ps.replica = world.rank() / p;
  ps.gpipe = pc.schedule == config::PipelineSchedule::gpipe;
  ps.microbatches = pc.microbatches;
  ps.whole_params = whole.parameter_count();

  // Explicit cuts are checked before any group exists: a bad cut fails every rank alike, and
  // no rank leaves while another is still connecting.
  pp::StageRanges ranges;
  std::string how;
  if (!pc.cuts.empty()) {
    ranges = pp::split_at(names, pc.cuts, p, c.source_file + ": distributed.pipeline.cuts");
    check_shared_weights(whole, ranges, c.source_file);
    how = "cuts";
  }

  // Each process joins its own two groups; the names keep their stores apart.
  std::vector<int> pipe_ranks, data_ranks;
  for (int64_t s = 0; s < p; ++s) pipe_ranks.push_back(static_cast<int>(ps.replica * p + s));
  for (int64_t d = 0; d < ps.replicas; ++d) data_ranks.push_back(static_cast<int>(d * p + ps.stage));
  ps.pipe = world.subgroup(pipe_ranks, "pipe" + std::to_string(ps.replica));
  if (ps.replicas > 1) ps.data = world.subgroup(data_ranks, "data" + std::to_string(ps.stage));
  ps.transport = pp::collectives_transport(*ps.pipe, ctx.device());

  if (pc.cuts.empty()) {
    std::vector<double> weights;
    if (pc.balance == config::PipelineBalance::time) {
      // On a micro-batch's worth of rows (the sample's, repeated). Every rank measures; the
      // mean decides, so all ranks cut alike.
      const int64_t rows = std::max<int64_t>(1, c.data.batch_size / pc.microbatches);
      const auto timing_rows = at::arange(rows, at::kLong).remainder(sample.size(0));
      auto t = at::tensor(block_seconds(whole, sample.index_select(0, timing_rows)), at::kDouble);
      world.all_reduce(t, ReduceOp::mean, "the measured block times");
      weights.assign(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
    } else {
      for (size_t b = 0; b < names.size(); ++b) {
        double n = 0;
        for (const auto& q : whole.block(b).parameters()) n += static_cast<double>(q.numel());
        weights.push_back(n);
      }
    }
    ranges = pp::balance(weights, p);
    how = std::string("balanced by ") + config::spelling(config::kPipelineBalances, pc.balance);
  }
  check_shared_weights(whole, ranges, c.source_file);
  ps.first_block = ranges[static_cast<size_t>(ps.stage)].first;
  ps.last_block = ranges[static_cast<size_t>(ps.stage)].second;

  auto stage = std::make_unique<models::Model>(whole.name());
  std::vector<std::string> held;
  for (int64_t b = ps.first_block; b < ps.last_block; ++b) {
    stage->add_block(names[static_cast<size_t>(b)], whole.block_ptr(static_cast<size_t>(b)));
    held.push_back(names[static_cast<size_t>(b)]);
  }
  for (const auto& [layer, norm] : whole.norm_pairs())
    for (const auto& h : held)
      if (layer.rfind(h + ".", 0) == 0) stage->add_norm_pair(layer, norm);
  if (whole.resized()) stage->mark_resized();
  {
    torch::NoGradGuard no_grad;
    sample = whole.forward_blocks(sample, 0, ps.first_block);
  }
  stage->to(ctx.device());
  sample = sample.to(ctx.device());
  std::string plan;
  for (size_t s = 0; s < ranges.size(); ++s)
    plan += detail::concat(s ? ", " : "", "stage ", s, ": ", names[static_cast<size_t>(ranges[s].first)],
                           "..", names[static_cast<size_t>(ranges[s].second - 1)]);
  log::info("pipeline: ", p, " stages x ", ps.replicas, " replica(s), ", config::spelling(config::kPipelineSchedules, pc.schedule), ", ",
            pc.microbatches, " micro-batches; blocks (", how, "): ", plan, "; this process: stage ",
            ps.stage, " of replica ", ps.replica, ", ", stage->parameter_count(), " of ",
            ps.whole_params, " parameters");
  return stage;
}

void check_stage_callbacks(const Callbacks& callbacks) {
  std::string problems;
  for (const auto& cb : callbacks) {
    const auto why = cb->pipeline_limitation();
    if (!why.empty()) problems += "; compression pass " + cb->name() + ": " + why;
  }
  SCULPT_CHECK(problems.empty(),
               "distributed.pipeline: every pass of the recipe runs on each stage, which holds "
               "only its own blocks and never the whole model's outputs",
               problems, " (run these passes without a pipeline)");
}

int64_t rows_per_replica(const RunContext& ctx, int64_t rows) {
  const auto& c = ctx.config();
  const int replicas =
      std::max<int>(1, ctx.world_size() / static_cast<int>(c.distributed.pipeline.stages));
  return data::shard_size(rows, replicas, c.distributed.uneven_data == config::UnevenData::pad);
}

namespace {
at::Tensor stage_forward(models::Model& model, const at::Tensor& x, c10::Device device,
                         bool bf16) {
  Autocast autocast(device, bf16);
  return model.forward_blocks(x, 0, static_cast<int64_t>(model.block_count()));
}
}  // namespace

StageStep pipeline_step(PipelineStage& ps, models::Model& model, const tasks::Task& task,
                        const data::Batch& b, c10::Device device, bool bf16,
                        distributed::DataParallel* ddp,
                        const std::function<at::Tensor()>& extra_loss) {
  const int64_t n = b.size();
  const auto rows = pp::microbatch_rows(n, std::min(ps.microbatches, n));
  std::vector<at::Tensor> inputs, targets;
  if (ps.first()) inputs = pp::split_rows(b.inputs.to(device), rows);
  if (ps.last()) targets = pp::split_rows(b.targets.to(device), rows);
  pp::StageFunctions fns;
  const bool last = ps.last();
  fns.forward = [&](const at::Tensor& x) {
    auto y = stage_forward(model, x, device, bf16);
    return last ? y.to(at::kFloat) : y;  // the loss in fp32 whatever the forward ran in
  };
  fns.loss = [&](const at::Tensor& out, const at::Tensor& y) { return task.loss(out, y); };
  if (ddp) {
    fns.before_backward = [ddp](bool final_one) { ddp->begin_backward(final_one); };
    fns.after_backwards = [ddp] { ddp->finish_backward(); };
  }
  fns.extra_loss = extra_loss;
  const auto st = pp::run_step(ps.gpipe ? pp::Schedule::gpipe : pp::Schedule::one_f_one_b,
                               ps.stage, ps.stages, rows, inputs, targets, fns, *ps.transport);
  // The step's window is the slowest stage's (the stages start together: every step ends in a
  // collective); a stage is idle for the part of it it does not compute.
  auto window = at::tensor({st.total_seconds}, at::kDouble);
  ps.pipe->all_reduce(window, ReduceOp::max, "the pipeline step's duration");
  ps.busy_s += st.busy_seconds;
  ps.window_s += window.item<double>();
  ps.peak_live = std::max(ps.peak_live, st.peak_live);
  return StageStep{st.loss, st.extra_loss, st.peak_live};
}

std::map<std::string, double> pipeline_evaluate(PipelineStage& ps, models::Model& model,
                                                const tasks::Task& task, const data::Dataset& ds,
                                                const config::DataConfig& data,
                                                c10::Device device, bool bf16) {
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  auto& tr = *ps.transport;
  const int64_t last = ps.stages - 1;
  std::string result;
  // The last stage drives: each forward the task asks for is a command (1) and the inputs to
  // stage 0, whose output travels through the stages back to it; 0 ends the evaluation. Every
  // stage but the last two passes the command on to the next.
  if (ps.last()) {
    const tasks::Forward forward = [&](const at::Tensor& x) {
      tr.send(at::ones({1}, at::TensorOptions().dtype(at::kLong).device(device)), 0);
      tr.send(x, 0);
      auto h = tr.recv(last - 1);
      auto out = stage_forward(model, h, device, bf16).to(at::kFloat);
      tr.flush();
      return out;
    };
    data::Loader loader(ds, data.batch_size, data::LoaderOptions::for_evaluation(data));
    tasks::MetricSums sums;
    data::Batch b;
    while (loader.next(b))
      task.evaluate_batch(sums, forward, b.inputs.to(device), b.targets.to(device));
    tr.send(at::zeros({1}, at::TensorOptions().dtype(at::kLong).device(device)), 0);
    tr.flush();
    result = nlohmann::json(task.finish(sums)).dump();
  } else {
    const int64_t from = ps.first() ? last : ps.stage - 1;
    while (true) {
      auto command = tr.recv(from);
      if (ps.stage + 1 < last) tr.send(command, ps.stage + 1);
      if (command.item<int64_t>() == 0) break;
      auto x = tr.recv(from);
      tr.send(stage_forward(model, x, device, bf16), ps.stage + 1);
      tr.flush();
    }
    tr.flush();
  }
  model.train(was_training);
  const auto all = ps.pipe->all_gather(result, "the evaluation metrics of the last stage");
  return nlohmann::json::parse(all.back()).get<std::map<std::string, double>>();
}

double clip_grad_norm(PipelineStage& ps, models::Model& model, double max_norm) {
  torch::NoGradGuard no_grad;
  double sq = 0;
  for (const auto& p : model.parameters())
    if (p.grad().defined()) sq += p.grad().to(at::kDouble).square().sum().item<double>();
  auto t = at::tensor({sq}, at::kDouble);
  ps.pipe->all_reduce(t, ReduceOp::sum, "the squared gradient norms of the stages");
  const double norm = std::sqrt(t.item<double>());
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1)
    for (auto& p : model.parameters())
      if (p.grad().defined()) p.grad().mul_(coef);
  return norm;
}

io::NamedTensors gather_model(PipelineStage& ps, models::Model& model) {
  if (ps.replica != 0) return {};
  auto& tr = *ps.transport;
  auto mine = model.state_tensors();
  const auto device = mine.empty() ? c10::Device(c10::kCPU) : mine.front().second.device();
  if (!ps.first()) {
    tr.send(at::tensor({static_cast<int64_t>(mine.size())}, at::kLong).to(device), 0);
    for (const auto& [name, t] : mine) {
      auto bytes = at::empty({static_cast<int64_t>(name.size())}, at::kByte);
      std::copy(name.begin(), name.end(), bytes.data_ptr<uint8_t>());
      tr.send(bytes.to(device), 0);
      tr.send(t.detach(), 0);
    }
    tr.flush();
    return {};
  }
  io::NamedTensors all;
  for (auto& [name, t] : mine) all.emplace_back(name, t.detach().cpu());
  for (int64_t s = 1; s < ps.stages; ++s) {
    const int64_t n = tr.recv(s).cpu().item<int64_t>();
    for (int64_t i = 0; i < n; ++i) {
      auto bytes = tr.recv(s).cpu();
      std::string name(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()),
                       static_cast<size_t>(bytes.numel()));
      auto t = tr.recv(s).cpu();
      const bool seen = std::any_of(all.begin(), all.end(),
                                    [&](const auto& e) { return e.first == name; });
      if (!seen) all.emplace_back(std::move(name), std::move(t));  // the resize marker repeats
    }
  }
  return all;
}

nlohmann::json gather_summaries(PipelineStage& ps, const Callbacks& callbacks) {
  nlohmann::json mine = nlohmann::json::array();
  for (const auto& cb : callbacks) mine.push_back({{"pass", cb->name()}, {"summary", cb->summary()}});
  const auto all = ps.pipe->all_gather(mine.dump(), "the stages' pass summaries");
  nlohmann::json out = nlohmann::json::array();
  for (size_t s = 0; s < all.size(); ++s)
    for (auto& item : nlohmann::json::parse(all[s])) {
      item["stage"] = s;
      out.push_back(item);
    }
  return out;
}

nlohmann::json stage_report(PipelineStage& ps, models::Model& model) {
  const nlohmann::json mine = {{"blocks", model.block_names()},
                               {"params", model.parameter_count()},
                               {"busy_s", ps.busy_s},
                               {"steps_s", ps.window_s},
                               {"bubble", ps.window_s > 0 ? 1.0 - ps.busy_s / ps.window_s : 0.0},
                               {"peak_live_microbatches", ps.peak_live}};
  const auto all = ps.pipe->all_gather(mine.dump(), "the stages' reports");
  nlohmann::json out = nlohmann::json::array();
  for (const auto& a : all) out.push_back(nlohmann::json::parse(a));
  return out;
}

fs::path stage_dir(const fs::path& run_dir, int64_t stage) {
  return run_dir / ("stage_" + std::to_string(stage));
}

std::optional<fs::path> resolve_stage_resume(RunContext& ctx, const PipelineStage& ps) {
  const auto& resume = ctx.config().run.resume;
  if (resume.empty()) return std::nullopt;
  fs::path root = ctx.dir();
  if (resume != "auto") {
    root = resume;
    SCULPT_CHECK(fs::is_directory(stage_dir(root, 0)), ctx.config().source_file,
                 ": run.resume: ", resume,
                 " is not the directory of a pipelined run (it has no stage_0/); under "
                 "distributed.pipeline run.resume takes auto or such a directory");
  }
  const auto latest = CheckpointStore(stage_dir(root, ps.stage), 1).latest();
  double step = -1;
  if (latest) step = std::stod(latest->filename().string().substr(5));  // step_<N>
  auto t = at::tensor({step, -step}, at::kDouble);
  ctx.collectives().all_reduce(t, ReduceOp::min, "the stages' newest checkpoints");
  const auto oldest = static_cast<int64_t>(t[0].item<double>());
  const auto newest = static_cast<int64_t>(-t[1].item<double>());
  if (oldest < 0) {
    if (newest >= 0)
      log::warn("run.resume: some stages have no checkpoint yet; every stage starts fresh");
    return std::nullopt;
  }
  const auto dir = stage_dir(root, ps.stage) / "checkpoints" / ("step_" + std::to_string(oldest));
  SCULPT_CHECK(fs::is_directory(dir), "run.resume: stage ", ps.stage, " has no checkpoint of step ",
               oldest, " (the newest step every stage has): ", dir.string(),
               " is missing; raise trainer.keep_checkpoints");
  return dir;
}

}  // namespace sculpt::trainers
