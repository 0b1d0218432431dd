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
#include "compression/fisher_board.h"
#include "compression/passes/prune/sparse_export.h"

#include <torch/torch.h>

#include <cmath>
#include <map>
#include <sstream>

#include "compression/passes/prune/bsr.h"
#include "compression/passes/prune/prune_mask.h"
#include "compression/runtimes.h"
#include "compression/passes/prune/prune_removal.h"
#include "core/run/collectives.h"
#include "core/data/dataset.h"
#include "core/error.h"
#include "core/logging/logging.h"
#include "core/models/model.h"

namespace sculpt::compression {

namespace {

using prune::MaskTransform;
using prune::Pattern;
using prune::PositionProbe;
using prune::Schedule;

using prune::PatternKind;
using prune::ScheduleKind;

class PrunePass final : public CompressionPass, public RuntimeProvider, public FisherBoardUser {
 public:
  using CompressionPass::CompressionPass;
  void set_fisher_board(std::shared_ptr<FisherBoard> board) override { board_ = std::move(board); }

  void attach(models::Model& model, const StepContext& ctx) override {
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

  void on_batch(data::Batch& /*batch*/, const StepContext& ctx) override {
    // rigl needs the dense gradient of the step that precedes an update.
    for (auto& l : layers_)
      if (l.o.schedule == ScheduleKind::rigl)
        l.mask->capture(ctx.step + 1 > l.sched.start && prune::update_due(l.sched, ctx.step + 1));
  }

  void after_backward(models::Model& /*model*/, const StepContext& /*ctx*/) override {
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

  void after_step(models::Model& /*model*/, const StepContext& ctx) override {
    step_ = ctx.step;
    update(ctx.step, ctx);
    for (auto& l : layers_) {
      enforce(l, ctx.optimizer);
      if (l.o.schedule == ScheduleKind::rigl) l.mask->capture(false);
    }
  }

  void finalize(models::Model& model, const StepContext& ctx) override {
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
  void install_runtimes(models::Model& model) override {
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

  CallbackState state_dict() const override {
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

  void load_state_dict(const CallbackState& state) override {
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

  std::string pipeline_limitation() const override {
    for (const auto& l : layers_) {
      if (l.o.pattern == PatternKind::channel && l.o.remove)  // (heads stay within their attention)
        return "layer " + l.name + " has its channels removed at finalize, which resizes the "
               "next layer, possibly on the next stage (set remove: false to keep the masks)";
      if (!l.o.group.empty())
        return "layer " + l.name + " shares the budget of group '" + l.o.group +
               "', which would be split per stage";
    }
    return {};
  }
  nlohmann::json summary() const override {
    nlohmann::json layers = nlohmann::json::array();
    double params = 0, kept = 0, flops = 0, kept_flops = 0, bytes = 0;
    for (const auto& l : layers_) {
      const double n = static_cast<double>(l.rows * l.cols);
      const double s = sparsity(l);
      const double f = 2.0 * n * static_cast<double>(l.positions);
      nlohmann::json j = {{"name", l.name},
                          {"pattern", prune::pattern_label(l.pattern)},
                          {"shape", l.layer_shape},
                          {"schedule", config::spelling(prune::kScheduleKinds, l.o.schedule)},
                          {"scorer", config::spelling(prune::kScorerKinds, l.o.scorer)},
                          {"target", final_target(l)},
                          {"sparsity", s},
                          {"params", n},
                          {"remaining_params", n * (1 - s)},
                          {"flops", f},
                          {"remaining_flops", f * (1 - s)},
                          {"sparse_bytes", sparse_bytes(l)}};
      if (!l.o.group.empty()) j["group"] = l.o.group;
      layers.push_back(j);
      bytes += sparse_bytes(l);
      params += n;
      kept += n * (1 - s);
      flops += f;
      kept_flops += f * (1 - s);
    }
    nlohmann::json out = {{"layers", layers},
                          {"steps", step_},
                          {"params", params},
                          {"remaining_params", kept},
                          {"sparsity", params > 0 ? 1 - kept / params : 0.0},
                          {"flops", flops},
                          {"remaining_flops", kept_flops},
                          {"dense_bytes", params * 4},
                          {"sparse_bytes", bytes},
                          {"charts", charts()}};
    if (!removed_.is_null()) out["removed"] = removed_;
    if (!exported_.is_null()) out["sparse_export"] = exported_;
    if (!runtimes_.empty()) out["runtimes"] = runtimes_;
    return out;
  }

  std::string describe(const Target& t) const override {
    static const PruneOptions defaults;
    const auto& o = t.options ? options_of<PruneOptions>(t) : defaults;
    std::ostringstream os;
    os << prune::pattern_label(o.pattern_spec()) << ", "
       << config::spelling(prune::kScorerKinds, o.scorer) << ", "
       << config::spelling(prune::kScheduleKinds, o.schedule) << " to " << o.final_sparsity();
    if (!o.group.empty()) os << " (budget shared by group " << o.group << ")";
    // The plan at a few points: in the schedule's unit; a relative end (0) is shown for a run of
    // 1000 steps (the run's length is not known here).
    using Unit = config::StepPoint::Unit;
    const bool epochs = o.unit == ScheduleUnit::epochs || o.end.unit == Unit::epochs;
    const int64_t per_epoch = 100;  // epochs are resolved at 100 steps and shown back in epochs
    // A relative end (0, or a fraction) is shown for a run of 1000 steps.
    const bool relative = o.end.value == 0 || (o.end.unit == Unit::fraction && !epochs);
    const int64_t total =
        relative ? 1000
                 : static_cast<int64_t>(std::llround(
                       static_cast<double>(o.step_of(o.end, 0, per_epoch, "end")) * 1.25));
    Schedule s = o.schedule_for(total, per_epoch);
    os << "; planned sparsity";
    if (relative) os << " (in a run of 1000 " << (epochs ? "steps, 100 per epoch" : "steps") << ")";
    os << ":";
    for (int64_t at : {int64_t{0}, s.start, (s.start + s.end) / 2, s.end}) {
      os << " s(";
      if (epochs && !relative)
        os << "epoch " << static_cast<double>(at) / static_cast<double>(per_epoch);
      else
        os << at;
      os << ")=" << std::round(prune::planned_sparsity(s, at) * 1000) / 1000;
    }
    return os.str();
  }

 private:
  struct Layer {
    std::string name;
    std::shared_ptr<nn::Compressible> layer;
    PruneOptions o;
    Schedule sched;
    Pattern pattern;
    int64_t rows = 0, cols = 0;
    std::vector<int64_t> layer_shape;
    at::Tensor sizes;  // unit sizes (CPU, long)
    std::shared_ptr<MaskTransform> mask;
    std::shared_ptr<prune::Scorer> scorer;  // chosen by the layer's `scorer:`
    at::Tensor acc;  // taylor/movement scores summed since the last update, [rows, cols]
    int64_t acc_steps = 0;
    int64_t positions = 1;  // output positions per sample (FLOPs)
    std::string norm;                    // channel: the norm layer that follows (norm_pairs)
    std::string coupled;                 // channel: the model's channel group it adds into
    std::vector<at::Tensor> norm_params;  // its weight and bias
  };

  static double final_target(const Layer& l) { return l.o.final_sparsity(); }

  Schedule resolve(const PruneOptions& o, int64_t total, int64_t per_epoch,
                   const std::string& layer) const {
    auto s = o.schedule_for(total, per_epoch);
    if (total > 0 && s.start > total)
      log::warn("compression pass ", name(), ": layer ", layer, " starts pruning at step ",
                s.start, ", after the run's ", total, " steps: it stays dense");
    return s;
  }

  at::Tensor weight2d(const Layer& l) const {
    return l.layer->raw_weight().detach().reshape({l.rows, l.cols});
  }

  void measure_positions(models::Model& model, const StepContext& ctx) {
    for (auto& l : layers_) l.layer_shape = l.layer->raw_weight().sizes().vec();
    if (!ctx.batch || !ctx.batch->inputs.defined() || layers_.empty()) return;
    std::vector<nn::Compressible*> layers;
    for (auto& l : layers_) layers.push_back(l.layer.get());
    const auto positions = prune::measure_positions(model, layers, ctx.batch->inputs.to(device()),
                                                    name());
    for (size_t i = 0; i < layers_.size(); ++i) layers_[i].positions = positions[i];
  }
  c10::Device device() const { return layers_.front().layer->raw_weight().device(); }

  double sparsity(const Layer& l) const {
    const auto& m = l.mask->unit_mask();
    return m.defined() ? prune::mask_sparsity(m, l.sizes) : 0.0;
  }

  // The layer's element scores, [rows, cols] (higher = keep).
  at::Tensor scores(const Layer& l) const {
    const at::Tensor published =
        board_ ? board_->published(l.layer->raw_weight()) : at::Tensor();  // the EWC pass's
    return l.scorer->scores(weight2d(l), l.acc, l.acc_steps, published);
  }

  void set_mask(Layer& l, const at::Tensor& unit_in, const StepContext& ctx) {
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
  static void enforce(Layer& l, torch::optim::Optimizer* optimizer) {
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
  void update(int64_t t, const StepContext& ctx) {
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

  void rigl_update(Layer& l, int64_t t, const StepContext& ctx) {
    const auto& mask = l.mask->unit_mask();
    const double f = prune::rigl_drop_fraction(l.sched, t);
    auto g = l.mask->dense_grad();
    if (!mask.defined() || f <= 0 || !g.defined()) return;
    auto keep = prune::rigl_swap(mask, weight2d(l), g.detach().reshape({l.rows, l.cols}), f,
                                 l.pattern);
    if (keep.defined()) set_mask(l, keep, ctx);
  }

  double sparse_bytes(const Layer& l) const {
    return prune::sparse_fp32_bytes(l.rows, l.cols, sparsity(l), l.pattern);
  }

  // The planned and actual sparsity (all chosen layers) at each mask update, as report.html
  // charts: {"<name>": [[step, value], ...]}.
  nlohmann::json charts() const {
    nlohmann::json planned = nlohmann::json::array(), actual = nlohmann::json::array();
    for (const auto& c : curve_) {
      planned.push_back({c[0], c[1]});
      actual.push_back({c[0], c[2]});
    }
    return {{"planned sparsity", planned}, {"actual sparsity", actual}};
  }

  // curve_: [step, planned, actual] at every mask update.
  void record_curve(int64_t t) {
    double n = 0, planned = 0, actual = 0;
    for (const auto& l : layers_) {
      const double w = static_cast<double>(l.rows * l.cols);
      n += w;
      planned += w * prune::planned_sparsity(l.sched, t);
      actual += w * sparsity(l);
    }
    if (n > 0) curve_.push_back({t, planned / n, actual / n});
  }

  std::vector<Layer> layers_;
  std::shared_ptr<FisherBoard> board_;  // the recipe's: Fisher estimates other passes publish
  int64_t step_ = 0;
  nlohmann::json curve_ = nlohmann::json::array();
  nlohmann::json removed_;  // physical removal: what was cut
  nlohmann::json exported_;  // the sparse export written at finalize
  nlohmann::json runtimes_ = nlohmann::json::object();  // layer -> its BSR runtime
};

}  // namespace

std::unique_ptr<CompressionPass> make_prune_pass(const config::PassConfig& cfg) {
  return std::make_unique<PrunePass>(cfg);
}

}  // namespace sculpt::compression
