// group_lasso: an example compression pass, loaded by Sculpt as a plugin.
// Group lasso (Yuan & Lin 2006; Wen et al. 2016, "Learning Structured Sparsity in Deep Neural
// Networks") on the output rows of each chosen layer's weight W (rows of a Linear's [out, in],
// filters of a Conv2d's [out, in, k, k]):
//   extra_loss = lambda * sum over layers, rows r of ||W[r]||_2
// which drives whole rows towards zero. At the end, rows whose norm is below `threshold` are
// set to exactly zero (structured pruning) when `prune` is on. The summary reports, per layer,
// the mean row norm (before pruning) and the share of rows below the threshold.
#include <torch/torch.h>

#include "compression/plugin.h"
#include "core/models/model.h"

namespace {

using sculpt::compression::CompressionPass;
using sculpt::compression::Target;

// The pass's own keys, beside `name:` in its `compression:` item (and in `overrides:` items).
struct GroupLassoOptions : sculpt::config::Section {
  double lambda = 1e-3;     // penalty strength: loss += lambda * sum of row L2 norms, >= 0
  double threshold = 1e-2;  // a row with L2 norm below this counts as removed, >= 0
  bool prune = true;        // at the end, set the rows below `threshold` to exactly zero

  void visit(sculpt::config::Visitor& v) override {
    using sculpt::config::Range;
    v.field("lambda", lambda, "group_lasso: penalty on the sum of row L2 norms",
            Range::at_least(0));
    v.field("threshold", threshold, "group_lasso: rows with a smaller L2 norm count as removed",
            Range::at_least(0));
    v.field("prune", prune, "group_lasso: zero the rows below threshold after training");
  }
};

// L2 norm of each output row of a weight: [out].
at::Tensor row_norms(const at::Tensor& weight) {
  return weight.flatten(1).norm(2, 1);
}

class GroupLasso final : public CompressionPass {
 public:
  using CompressionPass::CompressionPass;

  void attach(sculpt::models::Model& model, const sculpt::trainers::StepContext&) override {
    targets_ = select_layers(model);
  }

  at::Tensor extra_loss(sculpt::models::Model&, const sculpt::trainers::StepContext&) override {
    at::Tensor penalty;
    for (const auto& t : targets_) {
      const double lambda = options_of<GroupLassoOptions>(t).lambda;
      if (lambda == 0) continue;
      at::Tensor term = lambda * row_norms(t.layer->raw_weight()).sum();
      penalty = penalty.defined() ? penalty + term : term;
    }
    return penalty;  // undefined (no term) when every lambda is 0
  }

  void finalize(sculpt::models::Model&, const sculpt::trainers::StepContext&) override {
    torch::NoGradGuard no_grad;
    summary_ = nlohmann::json::object();
    int64_t rows = 0, removed = 0;
    for (const auto& t : targets_) {
      const auto& o = options_of<GroupLassoOptions>(t);
      const at::Tensor& w = t.layer->raw_weight();
      const at::Tensor norms = row_norms(w);
      const at::Tensor below = norms < o.threshold;
      const int64_t n_below = below.sum().item<int64_t>();
      if (o.prune && n_below > 0) {
        // Broadcast the row mask over the weight's other dimensions.
        std::vector<int64_t> shape(static_cast<size_t>(w.dim()), 1);
        shape[0] = w.size(0);
        w.masked_fill_(below.view(shape), 0.0);
      }
      summary_["layers"][t.name] = {{"rows", w.size(0)},
                                    {"rows_below_threshold", n_below},
                                    {"fraction_below_threshold",
                                     static_cast<double>(n_below) / static_cast<double>(w.size(0))},
                                    {"mean_row_norm", norms.mean().item<double>()},
                                    {"pruned", o.prune}};
      rows += w.size(0);
      removed += n_below;
    }
    summary_["rows"] = rows;
    summary_["rows_below_threshold"] = removed;
  }

  nlohmann::json summary() const override { return summary_; }

 private:
  std::vector<Target> targets_;
  nlohmann::json summary_ = nlohmann::json::object();
};

void register_group_lasso(sculpt::compression::PassRegistry& registry) {
  registry.add(
      "group_lasso", "example plugin: group-lasso penalty on weight rows, then zeroes small rows",
      [](const sculpt::config::PassConfig& cfg) { return std::make_unique<GroupLasso>(cfg); },
      [] { return std::make_shared<GroupLassoOptions>(); });
}

}  // namespace

SCULPT_PLUGIN(register_group_lasso)
