// The prune pass's training and mask updates (its class: prune_pass.h; reports: prune_report.cpp).
//
// prune. Per chosen layer: a Schedule (resolved to steps at attach), a Pattern (the MaskCreator),
// a Scorer (scorers.h) and a MaskTransform holding the unit mask; layers updated together share
// an Allocation (prune_core.h). Mask updates run in attach (t = 0) and after_step; the
// scores come from the raw weights (magnitude) or from gradients summed since the last update
// (taylor |w g|, movement -w g); pruned units score -inf so that masks only grow, except under
// rigl, which drops the weakest active weights and regrows those with the largest dense
// gradient. Fisher scores are left to the EWC pass (issue on continual learning), which owns the
// Fisher estimate.
//
// Data parallelism: every mask is broadcast from rank 0 as it is set. Taylor and movement scores
// come from DDP's averaged gradients and magnitudes from identical weights, but RigL's dense
// gradients are each rank's own, so rank 0 decides for all.
#include "compression/passes/prune/prune.h"
#include "compression/passes/prune/prune_pass.h"
#include "compression/fisher_board.h"
#include "compression/passes/prune/sparse_export.h"

#include <torch/torch.h>

#include <cmath>
#include <map>

#include "compression/passes/prune/bsr.h"
#include "compression/passes/prune/prune_mask.h"
#include "compression/runtimes.h"
#include "compression/passes/prune/prune_removal.h"
#include "core/run/collectives.h"
#include "core/data/dataset.h"
#include "core/error.h"
#include "core/logging/logging.h"
#include "core/models/model.h"

namespace sculpt::compression::prune {

void PrunePass::attach(models::Model& model, const StepContext& ctx) {
  static const PruneOptions defaults;
  layers_.clear();
  curve_ = nlohmann::json::array();
  const auto targets = select_layers(model);
  const auto all_layers = nn::compressible_layers(model);
  for (const auto& t : targets) {
    Layer l;
    l.name = t.name;
    l.layer = t.layer;
    l.o = t.options ? options_of<PruneOptions>(t) : defaults;
    const auto& w = t.layer->raw_weight();
    l.rows = w.size(0);
    l.cols = w.numel() / std::max<int64_t>(1, w.size(0));
    l.pattern = l.o.pattern_spec();
    l.scorer = prune::make_scorer(l.o.scorer);
    if (l.o.pattern == PatternKind::head)
      SCULPT_CHECK(l.cols % l.o.heads == 0, "compression pass ", name(), ": layer ", t.name,
                   " has ", l.cols, " inputs, not divisible into heads = ", l.o.heads,
                   " groups (pattern head)");
    if (l.o.pattern == PatternKind::n_m)
      SCULPT_CHECK(l.cols % l.o.m == 0, "compression pass ", name(), ": layer ", t.name,
                   " has ", l.cols, " inputs per output, not a multiple of m = ", l.o.m,
                   " (pattern n:m); exclude it or use another m");
    if (l.o.pattern == PatternKind::channel)
      SCULPT_CHECK(t.name != all_layers.back().first, "compression pass ", name(),
                   ": pattern channel cannot remove the outputs of the model's last layer ",
                   t.name, "; exclude it");
    l.sched = resolve(l.o, ctx.total_steps, ctx.steps_per_epoch, t.name);
    l.sizes = prune::unit_sizes(l.rows, l.cols, l.pattern);
    if (l.o.pattern == PatternKind::channel)
      for (const auto& g : model.channel_groups())
        for (const auto& producer : g.producers)
          if (producer == t.name) l.coupled = g.name;
    if (l.o.pattern == PatternKind::channel)
      for (const auto& [layer, norm] : model.norm_pairs())
        if (layer == t.name) {
          l.norm = norm;
          for (const auto& p : model.named_modules("", false)[norm]->named_parameters(false))
            l.norm_params.push_back(p.value());
        }
    l.mask = std::make_shared<MaskTransform>(l.pattern, l.rows, l.cols);
    t.layer->add_weight_transform("prune", l.mask);
    layers_.push_back(std::move(l));
  }
  // uniform: one sparsity and one schedule for every layer, so that layers of one size keep
  // the same number of units.
  for (const auto& l : layers_)
    if (l.o.uniform && !layers_.empty())
      SCULPT_CHECK(l.o.sparsity == layers_.front().o.sparsity &&
                       l.sched.start == layers_.front().sched.start &&
                       l.sched.end == layers_.front().sched.end,
                   "compression pass ", name(), ": uniform: true, but layer ", l.name,
                   " has its own sparsity or schedule (an override) unlike ",
                   layers_.front().name, "; uniform needs one for every layer");
  measure_positions(model, ctx);
  // from_weights: the zeros of the starting weights stay pruned, and are the schedule's s_i.
  for (auto& l : layers_) {
    if (!l.o.initial_from_weights()) continue;
    torch::NoGradGuard no_grad;
    auto unit = prune::unit_scores(weight2d(l).abs(), l.pattern).gt(0);
    set_mask(l, unit, ctx);
    l.sched.initial = prune::mask_sparsity(unit, l.sizes.to(unit.device()));
    log::info("prune: ", l.name, " starts ", l.sched.initial * 100, "% sparse (from_weights)");
  }
  step_ = 0;
  update(0, ctx);
}

void PrunePass::on_batch(data::Batch& /*batch*/, const StepContext& ctx) {
  // rigl needs the dense gradient of the step that precedes an update.
  for (auto& l : layers_)
    if (l.o.schedule == ScheduleKind::rigl)
      l.mask->capture(ctx.step + 1 > l.sched.start && prune::update_due(l.sched, ctx.step + 1));
}

void PrunePass::after_backward(models::Model& /*model*/, const StepContext& /*ctx*/) {
  torch::NoGradGuard no_grad;
  for (auto& l : layers_) {
    if (!l.scorer->uses_gradients()) continue;
    const auto& g = l.layer->raw_weight().grad();
    if (!g.defined()) continue;
    auto s = l.scorer->evidence(l.layer->raw_weight().reshape({l.rows, l.cols}),
                                g.reshape({l.rows, l.cols}));
    l.acc = l.acc.defined() ? l.acc.add_(s) : s.clone();
    ++l.acc_steps;
  }
}

void PrunePass::after_step(models::Model& /*model*/, const StepContext& ctx) {
  step_ = ctx.step;
  update(ctx.step, ctx);
  for (auto& l : layers_) {
    enforce(l, ctx.optimizer);
    if (l.o.schedule == ScheduleKind::rigl) l.mask->capture(false);
  }
}

void PrunePass::finalize(models::Model& model, const StepContext& ctx) {
  torch::NoGradGuard no_grad;
  // Bake each mask into its raw weight and drop the transform.
  for (auto& l : layers_) {
    enforce(l, nullptr);
    l.layer->remove_weight_transform("prune");
  }
  std::vector<prune::ChannelCut> cuts;
  for (auto& l : layers_)
    if (l.o.pattern == PatternKind::channel && l.o.remove && l.mask->unit_mask().defined())
      cuts.push_back({l.name, l.norm, l.mask->unit_mask().to(at::kCPU)});
  if (!cuts.empty()) removed_ = prune::remove_channels(model, cuts, name());
  std::vector<prune::HeadCut> head_cuts;
  for (auto& l : layers_)
    if (l.o.pattern == PatternKind::head && l.o.remove && l.mask->unit_mask().defined())
      head_cuts.push_back({l.name, l.mask->unit_mask().to(at::kCPU).to(at::kBool)});
  if (!head_cuts.empty()) {
    auto heads = prune::remove_heads(model, head_cuts, name());
    if (removed_.is_null()) removed_ = heads;
    else removed_["heads"] = heads;
  }
  install_runtimes(model);
  std::vector<prune::SparseTarget> targets;
  for (const auto& l : layers_)
    if (l.o.export_sparse)
      targets.push_back({l.name, l.o.pattern == PatternKind::block ? l.o.block : 0});
  exported_ = prune::export_sparse_at_end(model, targets, ctx);
}

// Block-pruned Linear layers compute through the BSR kernel (CPU) where it pays.
void PrunePass::install_runtimes(models::Model& model) {
  static const PruneOptions defaults;
  runtimes_ = nlohmann::json::object();
  for (const auto& t : select_layers(model)) {
    const auto& o = t.options ? options_of<PruneOptions>(t) : defaults;
    if (o.pattern != PatternKind::block || o.runtime == BlockRuntime::dense ||
        !dynamic_cast<nn::Linear*>(t.layer.get()))
      continue;
    const auto& w = t.layer->raw_weight();
    if (w.size(0) % o.block || w.size(1) % o.block) {
      log::info("prune: ", t.name, " runs dense: ", w.sizes(), " does not split into ", o.block,
                "x", o.block, " blocks");
      continue;
    }
    const auto rt = prune::install_bsr_runtime(*t.layer, t.name, prune::to_bsr(w, o.block),
                                               o.runtime == BlockRuntime::bsr, "prune");
    if (!rt.empty()) runtimes_[t.name] = rt;
  }
}

CallbackState PrunePass::state_dict() const {
  CallbackState s;
  s.meta["step"] = step_;
  s.meta["curve"] = curve_;
  for (const auto& l : layers_) {
    if (l.mask->unit_mask().defined())
      s.tensors.emplace_back(l.name + ".mask", prune::pack_bits(l.mask->unit_mask()));
    if (l.acc.defined()) s.tensors.emplace_back(l.name + ".score", l.acc.to(at::kCPU));
    s.meta["layers"][l.name] = {{"acc_steps", l.acc_steps}, {"initial", l.sched.initial}};
  }
  return s;
}

void PrunePass::load_state_dict(const CallbackState& state) {
  SCULPT_CHECK(state.meta.contains("step") && state.meta["step"].is_number_integer(),
               "compression pass ", name(), ": the saved state has no integer 'step'");
  step_ = state.meta["step"].get<int64_t>();
  curve_ = state.meta.value("curve", nlohmann::json::array());
  std::map<std::string, at::Tensor> saved(state.tensors.begin(), state.tensors.end());
  for (auto& l : layers_) {
    SCULPT_CHECK(state.meta.contains("layers") && state.meta["layers"].contains(l.name),
                 "compression pass ", name(), ": the saved state has no layer ", l.name,
                 " (was the checkpoint written with other include/exclude patterns?)");
    const auto& m = state.meta["layers"][l.name];
    l.acc_steps = m["acc_steps"].get<int64_t>();
    l.sched.initial = m["initial"].get<double>();
    const auto dev = l.layer->raw_weight().device();
    auto mit = saved.find(l.name + ".mask");
    l.mask->set_mask(mit == saved.end()
                         ? at::Tensor()
                         : prune::unpack_bits(mit->second, l.sizes.sizes()).to(dev));
    auto sit = saved.find(l.name + ".score");
    l.acc = sit == saved.end() ? at::Tensor() : sit->second.to(dev, at::kFloat).clone();
  }
}

Schedule PrunePass::resolve(const PruneOptions& o, int64_t total, int64_t per_epoch,
                           const std::string& layer) const {
  auto s = o.schedule_for(total, per_epoch);
  if (total > 0 && s.start > total)
    log::warn("compression pass ", name(), ": layer ", layer, " starts pruning at step ",
              s.start, ", after the run's ", total, " steps: it stays dense");
  return s;
}

void PrunePass::measure_positions(models::Model& model, const StepContext& ctx) {
  for (auto& l : layers_) l.layer_shape = l.layer->raw_weight().sizes().vec();
  if (!ctx.batch || !ctx.batch->inputs.defined() || layers_.empty()) return;
  std::vector<nn::Compressible*> layers;
  for (auto& l : layers_) layers.push_back(l.layer.get());
  const auto positions = prune::measure_positions(model, layers, ctx.batch->inputs.to(device()),
                                                  name());
  for (size_t i = 0; i < layers_.size(); ++i) layers_[i].positions = positions[i];
}

// The layer's element scores, [rows, cols] (higher = keep).
at::Tensor PrunePass::scores(const Layer& l) const {
  const at::Tensor published =
      board_ ? board_->published(l.layer->raw_weight()) : at::Tensor();  // the EWC pass's
  return l.scorer->scores(weight2d(l), l.acc, l.acc_steps, published);
}

void PrunePass::set_mask(Layer& l, const at::Tensor& unit_in, const StepContext& ctx) {
  at::Tensor unit = unit_in;
  if (ctx.collectives && ctx.collectives->distributed()) {
    auto m = unit.to(at::kFloat).contiguous();
    ctx.collectives->broadcast(m, 0, "the prune mask of " + l.name);
    unit = m.to(unit_in.scalar_type());
  }
  l.mask->set_mask(unit.to(l.layer->raw_weight().device()));
  enforce(l, ctx.optimizer);
}

// Zeroes the pruned raw weights (biases of pruned channels too) and their optimizer state.
void PrunePass::enforce(Layer& l, torch::optim::Optimizer* optimizer) {
  if (!l.mask->unit_mask().defined()) return;
  torch::NoGradGuard no_grad;
  const auto& w = l.layer->raw_weight();
  std::vector<std::pair<at::Tensor, at::Tensor>> fixed = {{w, l.mask->full(w).logical_not()}};
  if (l.o.pattern == PatternKind::channel) {
    // The channel's bias and its norm's scale and shift too: a pruned channel outputs exactly
    // zero after the norm, which is what removing it computes.
    const auto gone = l.mask->unit_mask().to(w.device()).logical_not();
    if (l.layer->bias().defined()) fixed.emplace_back(l.layer->bias(), gone);
    for (const auto& p : l.norm_params) fixed.emplace_back(p, gone);
  }
  for (auto& [p, drop] : fixed) prune::zero_entries(p, drop, optimizer);
}

// Recomputes the masks due after t steps.
void PrunePass::update(int64_t t, const StepContext& ctx) {
  torch::NoGradGuard no_grad;
  bool any = false;
  // Layers sharing a group are updated together, with the schedule of the group's first one.
  std::map<std::string, std::vector<Layer*>> groups;
  std::vector<std::vector<Layer*>> batches;
  for (auto& l : layers_) {
    if (!prune::update_due(l.sched, t)) continue;
    if (!l.coupled.empty()) {  // a residual stream: one mask for all its producers
      groups["\x01" + l.coupled].push_back(&l);
    } else if (l.o.group.empty()) {
      batches.push_back({&l});
    } else {
      groups[l.o.group].push_back(&l);
    }
  }
  for (auto& [g, members] : groups) batches.push_back(members);
  for (auto& members : batches) {
    any = true;
    Layer& lead = *members.front();
    if (lead.o.schedule == ScheduleKind::rigl && t > lead.sched.start) {
      for (auto* l : members) rigl_update(*l, t, ctx);
      continue;
    }
    const double target = prune::planned_sparsity(lead.sched, t);
    std::vector<at::Tensor> unit_scores;
    for (auto* l : members) {
      auto u = prune::unit_scores(scores(*l), l->pattern).to(at::kCPU, at::kDouble);
      const auto& m = l->mask->unit_mask();
      if (m.defined()) u = u.masked_fill(m.to(at::kCPU).logical_not(),
                                         -std::numeric_limits<double>::infinity());
      unit_scores.push_back(u);
    }
    prune::Allocation a;
    a.target = target;
    a.shared_stream = !lead.coupled.empty();
    a.shared_budget = !lead.o.uniform && (members.size() > 1 || !lead.o.group.empty());
    a.unit_scores = std::move(unit_scores);
    for (auto* l : members) a.layers.push_back({l->sizes, l->pattern, l->o.min_sparsity,
                                                l->o.max_sparsity});
    const auto units = prune::allocate_units(a);
    for (size_t i = 0; i < members.size(); ++i) {
      set_mask(*members[i], units[i], ctx);
      members[i]->acc = at::Tensor();
      members[i]->acc_steps = 0;
    }
  }
  if (any) record_curve(t);
}

void PrunePass::rigl_update(Layer& l, int64_t t, const StepContext& ctx) {
  const auto& mask = l.mask->unit_mask();
  const double f = prune::rigl_drop_fraction(l.sched, t);
  auto g = l.mask->dense_grad();
  if (!mask.defined() || f <= 0 || !g.defined()) return;
  auto keep = prune::rigl_swap(mask, weight2d(l), g.detach().reshape({l.rows, l.cols}), f,
                               l.pattern);
  if (keep.defined()) set_mask(l, keep, ctx);
}

}  // namespace sculpt::compression::prune

namespace sculpt::compression {

std::unique_ptr<CompressionPass> make_prune_pass(const config::PassConfig& cfg) {
  return std::make_unique<prune::PrunePass>(cfg);
}

}  // namespace sculpt::compression
