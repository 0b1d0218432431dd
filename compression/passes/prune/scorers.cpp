#include "compression/passes/prune/scorers.h"

#include <ATen/ATen.h>

namespace sculpt::compression::prune {

namespace {

at::Tensor magnitude(const at::Tensor& w2d) { return w2d.abs().to(at::kFloat); }

class MagnitudeScorer final : public Scorer {
 public:
  bool uses_gradients() const override { return false; }
  at::Tensor evidence(const at::Tensor& /*w2d*/, const at::Tensor& /*g2d*/) const override {
    return {};
  }
  at::Tensor scores(const at::Tensor& w2d, const at::Tensor& /*acc*/, int64_t /*acc_steps*/,
                    const at::Tensor& /*published_fisher*/) const override {
    return magnitude(w2d);
  }
};

// taylor |w g| and movement -w g: the summed evidence itself (magnitude before any).
class WeightGradientScorer final : public Scorer {
 public:
  explicit WeightGradientScorer(bool absolute) : absolute_(absolute) {}
  at::Tensor evidence(const at::Tensor& w2d, const at::Tensor& g2d) const override {
    auto wg = (w2d * g2d).to(at::kFloat);
    return absolute_ ? wg.abs() : -wg;
  }
  at::Tensor scores(const at::Tensor& w2d, const at::Tensor& acc, int64_t acc_steps,
                    const at::Tensor& /*published_fisher*/) const override {
    if (acc.defined() && acc_steps > 0) return acc;
    return magnitude(w2d);
  }

 private:
  bool absolute_;
};

// F w^2 / 2 with F the published Fisher, else the mean squared gradient since the last update.
class FisherScorer final : public Scorer {
 public:
  at::Tensor evidence(const at::Tensor& /*w2d*/, const at::Tensor& g2d) const override {
    return g2d.to(at::kFloat).square();
  }
  at::Tensor scores(const at::Tensor& w2d, const at::Tensor& acc, int64_t acc_steps,
                    const at::Tensor& published_fisher) const override {
    at::Tensor f = published_fisher;
    if (f.defined())
      f = f.reshape(w2d.sizes()).to(at::kFloat);
    else if (acc.defined() && acc_steps > 0)
      f = acc / static_cast<double>(acc_steps);
    if (f.defined()) return f * w2d.to(at::kFloat).square() * 0.5;
    return magnitude(w2d);
  }
};

}  // namespace

std::unique_ptr<Scorer> make_scorer(ScorerKind kind) {
  switch (kind) {
    case ScorerKind::magnitude: return std::make_unique<MagnitudeScorer>();
    case ScorerKind::taylor: return std::make_unique<WeightGradientScorer>(/*absolute=*/true);
    case ScorerKind::movement: return std::make_unique<WeightGradientScorer>(/*absolute=*/false);
    case ScorerKind::fisher: return std::make_unique<FisherScorer>();
  }
  return nullptr;
}

}  // namespace sculpt::compression::prune
