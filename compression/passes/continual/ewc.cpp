// The ewc pass and its options (the Fisher's math: ewc_fisher.cpp; the penalty: ewc_penalty.cpp).
//
// ewc: the Fisher is computed in on_increment_end from per-sample gradients (one backward per
// sample: exact for any model, and on the sizes continual learning uses — ~1000 samples — it
// costs a fraction of an epoch). The penalty terms are kept per parameter as (F, theta*) pairs:
// one pair in `online` mode (F = gamma F_old + F_new, theta* = the latest end of increment), one
// per increment in `separate` mode. All of it is in the pass state (checkpoints, and so
// incremental.resume_from).
// Data parallelism: each rank takes every world_size-th of the chosen samples, and the Fisher
// sums are all-reduced before the division, so every rank stores the Fisher of all of them.
#include "compression/passes/continual/ewc.h"
#include "compression/passes/continual/ewc_internal.h"
#include "compression/fisher_board.h"
#include "core/data/dataset.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "compression/passes/pass_options.h"

#include <algorithm>
#include <chrono>

#include "core/data/loader.h"
#include "core/error.h"
#include "core/logging/logging.h"
#include "core/models/model.h"
#include "core/nn/layers.h"
#include "core/optim/optimizers.h"
#include "core/run/run_context.h"
#include "core/tasks/task.h"

namespace sculpt::compression {

void EwcOptions::visit(config::Visitor& v) {
  v.field("lambda", lambda,
          "ewc: strength; adds lambda/2 * sum F (w - w*)^2 to the objective (its gradient after "
          "backward, its value in the summary rather than the logged loss)",
          config::Range::at_least(0));
  v.choice("mode", mode, kEwcModes,
           "ewc: online (one Fisher, decayed by gamma per increment) | separate (one penalty per "
           "past increment)");
  v.field("gamma", gamma, "ewc: online mode's decay of the accumulated Fisher per increment",
          config::Range::closed(0, 1));
  v.choice("fisher", fisher, kFisherLabels,
           "ewc: labels of the Fisher's log-likelihood: empirical (the data's) | true (sampled "
           "from the model)");
  v.field("samples", samples,
          "ewc: samples of the increment the Fisher is estimated on (random, fixed by run.seed); "
          "0: all",
          config::Range::at_least(0));
  v.field("include_bias", include_bias, "ewc: also protect the biases of the chosen layers");
}

namespace {

class EwcPass final : public CompressionPass, public FisherBoardUser {
 public:
  ~EwcPass() override {
    if (board_)
      for (const auto& p : params_) board_->withdraw(p.param);
  }
  using CompressionPass::CompressionPass;
  void set_fisher_board(std::shared_ptr<FisherBoard> board) override { board_ = std::move(board); }

  void attach(models::Model& model, const StepContext& /*ctx*/) override {
    params_.clear();
    for_each_weight<EwcOptions>(
        *this, model, [&](const Target& t, const std::string& key, const at::Tensor& w,
                          const EwcOptions& o) {
          params_.push_back({t.name, key, w, o.lambda, t.layer, w.is_same(t.layer->bias())});
        });
    const auto& o = base_options();
    online_ = o.mode == EwcMode::online;
    gamma_ = o.gamma;
    empirical_ = o.fisher == FisherLabels::empirical;
    samples_ = o.samples;
  }

  void on_increment_end(models::Model& model, const data::Dataset& seen,
                        const StepContext& ctx) override {
    const auto t0 = std::chrono::steady_clock::now();
    // The rows, drawn with a generator fixed by (run.seed, increment), through the evaluation
    // loader so they are normalized as training saw them.
    const uint64_t seed = ctx.seed * 1000003ull +
                          static_cast<uint64_t>(ctx.increment) * 7919ull + 17ull;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    const int64_t n = samples_ > 0 ? std::min(samples_, seen.size()) : seen.size();
    auto rows = at::randperm(seen.size(), gen, at::TensorOptions().dtype(at::kLong)).narrow(0, 0, n);
    Collectives* comm = ctx.collectives && ctx.collectives->distributed() ? ctx.collectives
                                                                         : nullptr;
    if (comm) rows = rows.slice(0, comm->rank(), n, comm->world_size());
    const data::Dataset chosen = seen.subset(rows);
    SCULPT_CHECK(ctx.task, "compression pass ewc: the trainer gave no task (its per-sample "
                           "log-likelihood defines the Fisher)");
    data::Loader loader(chosen, 256, ctx.eval_loading);
    // Only what trains: a frozen weight (LoRA's base, `freeze`) has no gradient; its Fisher
    // stays 0 and it adds no penalty.
    std::vector<at::Tensor> live;
    std::vector<size_t> live_of;  // live[j] is params_[live_of[j]]
    for (size_t k = 0; k < params_.size(); ++k)
      if (params_[k].param.requires_grad()) {
        live.push_back(params_[k].param);
        live_of.push_back(k);
      }
    std::vector<at::Tensor> fisher;
    for (const auto& p : params_) fisher.push_back(torch::zeros_like(p.param, at::kFloat));
    const bool was_training = model.is_training();
    model.eval();
    data::Batch b;
    bool vectorized = true;
    while (loader.next(b)) {
      const auto x = b.inputs.to(ctx.device), y = b.targets.to(ctx.device);
      if (vectorized &&
          linear_fisher_sums(model, *ctx.task, x, y, gen, empirical_, params_, fisher))
        continue;
      vectorized = false;  // one backward per sample from here on
      if (live.empty()) continue;
      auto part = diagonal_fisher(
          *ctx.task, [&](const at::Tensor& in) { return model.forward(in); }, live, x, y,
          empirical_, gen);
      for (size_t j = 0; j < live.size(); ++j) fisher[live_of[j]].add_(part[j] * b.size());
    }
    fisher_vectorized_ = vectorized;
    model.train(was_training);
    if (comm)
      for (size_t k = 0; k < fisher.size(); ++k)
        comm->all_reduce(fisher[k], ReduceOp::sum, "the EWC Fisher of " + params_[k].key);
    for (auto& f : fisher) f.div_(static_cast<double>(std::max<int64_t>(n, 1)));
    Term term;
    for (size_t k = 0; k < params_.size(); ++k) {
      term.fisher.push_back(fisher[k]);
      term.anchor.push_back(params_[k].param.detach().clone());
    }
    if (online_ && !terms_.empty()) {
      for (size_t k = 0; k < params_.size(); ++k)
        term.fisher[k].add_(terms_[0].fisher[k], gamma_);
      terms_[0] = std::move(term);
    } else {
      terms_.push_back(std::move(term));
    }
    merged_ = Term{};
    ++increments_;
    publish();
    warn_if_unstable(ctx.optimizer_facts);
    // The slowest rank's time: pass state must agree across data-parallel ranks.
    auto seconds = at::tensor(
        {std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()},
        at::kDouble);
    if (ctx.collectives) ctx.collectives->all_reduce(seconds, ReduceOp::max, "ewc: the Fisher time");
    fisher_seconds_ += seconds.item<double>();
    log::info("ewc: Fisher of ", params_.size(), " tensors from ", n, " samples of increment ",
              ctx.increment);
  }

  // The penalty's gradient goes straight into the gradients, after backward (and after DDP's
  // reduction: it is the same on every rank), in one pass per parameter; its value
  // (lambda/2 sum F (w - w*)^2, the same step's weights) goes to the summary's "penalty", not
  // into the logged task loss.
  void after_backward(models::Model& /*model*/, const StepContext& /*ctx*/) override {
    if (terms_.empty()) return;
    if (terms_.size() > 1 && merged_.fisher.empty()) merge_terms();
    torch::NoGradGuard no_grad;
    at::Tensor device_total;
    double host_total = 0;
    Term& t = terms_.size() > 1 ? merged_ : terms_[0];
    for (size_t k = 0; k < params_.size(); ++k) {
      const auto& p = params_[k];
      if (p.lambda == 0 || !p.param.requires_grad()) continue;
      if (t.anchor[k].device() != p.param.device()) {
        t.anchor[k] = t.anchor[k].to(p.param.device());
        t.fisher[k] = t.fisher[k].to(p.param.device());
      }
      // No gradient: the parameter does not train this step (a `freeze` pass dropped it, or
      // the loss did not reach it), and the penalty must not make it move either.
      auto& grad = p.param.mutable_grad();
      if (!grad.defined()) continue;
      double sum = t.constant.empty() ? 0.0 : t.constant[k];
      auto on_device = penalty_into_grad(p.param, t.fisher[k], t.anchor[k], grad, p.lambda, sum);
      host_total += sum * (p.lambda / 2);
      if (on_device.defined()) {
        on_device = on_device * (p.lambda / 2);
        device_total = device_total.defined() ? device_total + on_device : on_device;
      }
    }
    last_penalty_ = device_total.defined() ? device_total + host_total
                                           : at::scalar_tensor(host_total, at::kDouble);
  }
  CallbackState state_dict() const override {
    CallbackState s;
    for (size_t i = 0; i < terms_.size(); ++i)
      for (size_t k = 0; k < params_.size(); ++k) {
        s.tensors.emplace_back(std::to_string(i) + "/fisher/" + params_[k].key,
                               terms_[i].fisher[k]);
        s.tensors.emplace_back(std::to_string(i) + "/anchor/" + params_[k].key,
                               terms_[i].anchor[k]);
      }
    s.meta = {{"terms", terms_.size()},
              {"increments", increments_},
              {"fisher_seconds", fisher_seconds_}};
    return s;
  }

  void load_state_dict(const CallbackState& state) override {
    terms_.clear();
    merged_ = Term{};
    const int64_t n = state.meta.value("terms", int64_t{0});
    increments_ = state.meta.value("increments", int64_t{0});
    fisher_seconds_ = state.meta.value("fisher_seconds", 0.0);
    auto find = [&](const std::string& key) {
      for (const auto& [name, t] : state.tensors)
        if (name == key) return t;
      throw UserError("compression pass ewc: the saved state has no " + key +
                      " (was it written with other layers or include_bias?)");
    };
    for (int64_t i = 0; i < n; ++i) {
      Term t;
      for (const auto& p : params_) {
        const std::string prefix = std::to_string(i) + "/";
        auto f = find(prefix + "fisher/" + p.key), a = find(prefix + "anchor/" + p.key);
        SCULPT_CHECK(f.sizes() == p.param.sizes() && a.sizes() == p.param.sizes(),
                     "compression pass ewc: saved ", p.key, " has shape ", f.sizes(),
                     ", the layer ", p.param.sizes());
        t.fisher.push_back(f.to(p.param.device(), at::kFloat));
        t.anchor.push_back(a.to(p.param.device(), p.param.scalar_type()));
      }
      terms_.push_back(std::move(t));
    }
    publish();
  }

  // The Fisher of every penalty term, summed, for other passes (the prune pass's fisher scorer).
  void publish() const {
    if (!board_) return;
    for (size_t k = 0; k < params_.size(); ++k) {
      if (terms_.empty()) {
        board_->withdraw(params_[k].param);
        continue;
      }
      at::Tensor sum = terms_[0].fisher[k].clone();
      for (size_t i = 1; i < terms_.size(); ++i) sum.add_(terms_[i].fisher[k]);
      board_->publish(params_[k].param, sum);
    }
  }

  // Per layer: lambda and the Fisher's mean and max (of the newest term); the penalty count.
  std::string pipeline_limitation() const override { return {}; }
  nlohmann::json summary() const override {
    nlohmann::json layers = nlohmann::json::array();
    for (size_t k = 0; k < params_.size(); ++k) {
      nlohmann::json j = {{"name", params_[k].key}, {"lambda", params_[k].lambda}};
      if (!terms_.empty()) {
        const auto& f = terms_.back().fisher[k];
        j["fisher_mean"] = f.mean().item<double>();
        j["fisher_max"] = f.max().item<double>();
      }
      layers.push_back(j);
    }
    return {{"mode", config::spelling(kEwcModes, online_ ? EwcMode::online : EwcMode::separate)},
            {"penalty", last_penalty_.defined() ? nlohmann::json(last_penalty_.item<double>())
                                                : nlohmann::json(nullptr)},
            {"increments", increments_},
            {"penalty_terms", terms_.size()},
            {"fisher_seconds", fisher_seconds_},
            {"fisher_method", fisher_vectorized_ ? "per-sample, vectorized over Linear layers"
                                                 : "per-sample backward"},
            {"parameters", layers}};
  }

 private:
  const EwcOptions& base_options() const { return pass_options<EwcOptions>(*this); }

  using Param = EwcParam;

  // Plain SGD with momentum m on the penalty alone, lambda/2 F (w - a)^2, oscillates with a
  // growing amplitude where lr * lambda * F > 2 (1 + m). A weight past that limit does not move
  // while it sits at its anchor (online EWC: the new increment's gradient may never reach it),
  // but in separate mode the anchor is the Fisher-weighted mean of several end points, away
  // from the weights, and training diverges (seen: Split MNIST, task-incremental, lambda 100).
  void warn_if_unstable(const trainers::OptimizerFacts& opt) const {
    if (opt.adaptive || opt.lr <= 0 || terms_.empty()) return;
    const double momentum = opt.momentum;
    double worst = 0;
    std::string where;
    for (size_t k = 0; k < params_.size(); ++k) {
      at::Tensor sum = terms_[0].fisher[k];
      for (size_t i = 1; i < terms_.size(); ++i) sum = sum + terms_[i].fisher[k];
      const double f = sum.max().item<double>();
      const double stiffness = opt.lr * params_[k].lambda * f;
      if (stiffness > worst) worst = stiffness, where = params_[k].key;
    }
    const double limit = 2 * (1 + momentum);
    if (worst > limit)
      log::warn("ewc: lr * lambda * max Fisher reaches ", worst, " at ", where,
                ", past plain SGD's stability limit 2 (1 + momentum) = ", limit,
                online_ ? "; online EWC holds only while those weights stay at their anchor"
                        : "; with separate penalties training will likely diverge",
                ": lower compression[].lambda or optimizer.lr");
    else
      log::info("ewc: lr * lambda * max Fisher ", worst, " (at ", where,
                "), under SGD's stability limit ", limit);
  }

  struct Term {
    std::vector<at::Tensor> fisher, anchor;  // per entry of params_
    std::vector<double> constant;            // merged terms: what the fold leaves over
  };

  // Separate mode: sum_k F_k (w - w*_k)^2 = F (w - m)^2 + c with F = sum_k F_k,
  // m = sum_k F_k w*_k / F (0 where F is 0) and c = sum(sum_k F_k w*_k^2 - F m^2): one term's
  // cost per step however many increments there were. Recomputed when the terms change.
  void merge_terms() {
    torch::NoGradGuard no_grad;
    merged_ = Term{};
    for (size_t k = 0; k < params_.size(); ++k) {
      auto f = at::zeros_like(terms_[0].fisher[k], at::kDouble);
      auto fw = at::zeros_like(f), fww = at::zeros_like(f);
      for (const auto& t : terms_) {
        const auto fk = t.fisher[k].to(at::kDouble), wk = t.anchor[k].to(at::kDouble);
        f += fk;
        fw += fk * wk;
        fww += fk * wk * wk;
      }
      const auto m = at::where(f > 0, fw / f, at::zeros_like(f));
      merged_.constant.push_back((fww - f * m * m).sum().item<double>());
      merged_.fisher.push_back(f.to(terms_[0].fisher[k].options()));
      merged_.anchor.push_back(m.to(params_[k].param.options()));
    }
  }
  std::vector<Param> params_;
  std::vector<Term> terms_;
  Term merged_;  // separate mode with several terms: their fold (empty: not computed yet)
  bool online_ = true, empirical_ = true;
  double gamma_ = 1.0;
  int64_t samples_ = 1000;
  int64_t increments_ = 0;
  double fisher_seconds_ = 0;
  std::shared_ptr<FisherBoard> board_;  // the recipe's (null outside a recipe)
  bool fisher_vectorized_ = false;  // the last Fisher came from linear_fisher_sums throughout
  at::Tensor last_penalty_;
};

}  // namespace

std::unique_ptr<CompressionPass> make_ewc_pass(const config::PassConfig& cfg) {
  return std::make_unique<EwcPass>(cfg);
}

}  // namespace sculpt::compression
