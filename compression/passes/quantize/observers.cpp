#include "compression/passes/quantize/observers.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"

namespace sculpt::quant {

namespace {
constexpr int64_t kBins = 2048;

// x as [P, n]: one row per scale (per tensor: 1 row; per channel: C rows; per group: a row
// per group), in the row-major order of qparam_shape.
at::Tensor flat_rows(const at::Tensor& x, const QSpec& spec) {
  switch (spec.granularity) {
    case Granularity::per_tensor: return x.reshape({1, -1});
    case Granularity::per_channel: return x.movedim(spec.axis, 0).reshape({x.size(spec.axis), -1});
    case Granularity::per_group: return x.reshape({-1, spec.group_size});
  }
  return x;
}

at::Tensor unflat(const at::Tensor& per_row, at::IntArrayRef shape, const QSpec& spec) {
  return per_row.reshape(qparam_shape(shape, spec));
}

// The k-th smallest value of each row, k = ceil(q * n) clamped to [1, n].
at::Tensor row_quantile(const at::Tensor& rows, double q) {
  const int64_t n = rows.size(1);
  const int64_t k = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(q * n)), 1, n);
  return std::get<0>(at::kthvalue(rows, k, 1));
}

// Mean squared quantization error of each row of `rows` for ranges [lo, hi] ([P, 1] each).
at::Tensor row_mse(const at::Tensor& rows, const at::Tensor& lo, const at::Tensor& hi,
                   const QSpec& spec) {
  QSpec flat = spec;
  flat.granularity = Granularity::per_tensor;  // [P, 1] qparams broadcast over [P, n]
  const QParams qp = qparams_from_range(lo, hi, flat);
  return (rows - fake_quantize(rows, qp)).pow(2).mean(1);
}

// Ratios of the full range tried by the MSE search.
std::vector<double> mse_ratios() {
  std::vector<double> r;
  for (int i = 0; i <= 70; ++i) r.push_back(1.0 - 0.01 * i);
  return r;
}

// TensorRT's KL calibration on a histogram of |x| (bins of equal width over [0, amax]):
// the bin count i whose clipped distribution, merged into `levels` levels, diverges least.
int64_t kl_threshold_bins(const std::vector<double>& h, int64_t levels) {
  const auto n = static_cast<int64_t>(h.size());
  if (n <= levels) return n;
  double best = std::numeric_limits<double>::infinity();
  int64_t best_i = n;
  std::vector<double> p, q;
  for (int64_t i = levels; i <= n; ++i) {
    p.assign(h.begin(), h.begin() + i);
    double outliers = 0;
    for (int64_t j = i; j < n; ++j) outliers += h[j];
    p[i - 1] += outliers;
    q.assign(i, 0.0);
    for (int64_t l = 0; l < levels; ++l) {
      const int64_t a = l * i / levels, b = (l + 1) * i / levels;
      double mass = 0;
      int64_t nonzero = 0;
      for (int64_t j = a; j < b; ++j) {
        mass += h[j];
        nonzero += h[j] > 0;
      }
      for (int64_t j = a; j < b; ++j)
        if (h[j] > 0) q[j] = mass / static_cast<double>(nonzero);
    }
    double sp = 0, sq = 0;
    for (int64_t j = 0; j < i; ++j) {
      sp += p[j];
      sq += q[j];
    }
    if (sp <= 0 || sq <= 0) continue;
    double kl = 0;
    for (int64_t j = 0; j < i; ++j) {
      if (p[j] <= 0) continue;
      const double pj = p[j] / sp, qj = q[j] > 0 ? q[j] / sq : 1e-12;
      kl += pj * std::log(pj / qj);
    }
    if (kl < best) {
      best = kl;
      best_i = i;
    }
  }
  return best_i;
}
}  // namespace

ObserverKind observer_kind(const std::string& name) {
  ObserverKind k{};
  if (!config::parse_spelling(kObserverKinds, name, k))
    throw UserError("unknown observer '" + name +
                    "' (minmax, moving_average, percentile, mse, entropy)");
  return k;
}

const char* observer_name(ObserverKind k) { return config::spelling(kObserverKinds, k); }

bool uses_histogram(ObserverKind k) {
  return k == ObserverKind::percentile || k == ObserverKind::mse || k == ObserverKind::entropy;
}

std::pair<double, double> histogram_range(const at::Tensor& counts_in, double lo, double hi,
                                          const QSpec& spec, const ObserverOptions& o) {
  const at::Tensor counts = counts_in.to(at::kDouble).contiguous();
  const int64_t bins = counts.size(0);
  const double width = (hi - lo) / static_cast<double>(bins);
  const at::Tensor centers = at::arange(bins, at::kDouble).add_(0.5).mul_(width).add_(lo);
  const double total = counts.sum().item<double>();
  SCULPT_CHECK(total > 0, "observer: the histogram is empty");
  const bool folded = spec.symmetric;  // symmetric grids clip |x|
  const double amax = std::max(std::abs(lo), std::abs(hi));
  auto as_range = [&](double t) -> std::pair<double, double> {
    if (!folded) return {std::max(lo, -t), std::min(hi, t)};
    return {-t, t};
  };
  switch (o.kind) {
    case ObserverKind::percentile: {
      const double p = o.percentile / 100.0;
      if (folded) {
        const at::Tensor a = centers.abs();
        const at::Tensor order = a.argsort();
        const at::Tensor cdf = counts.index_select(0, order).cumsum(0);
        const int64_t k = at::searchsorted(cdf, p * total).item<int64_t>();
        const double t = a.index_select(0, order)[std::min(k, bins - 1)].item<double>() + width / 2;
        return {-t, t};
      }
      const at::Tensor cdf = counts.cumsum(0);
      const int64_t klo = at::searchsorted(cdf, (1 - p) * total).item<int64_t>();
      const int64_t khi = at::searchsorted(cdf, p * total).item<int64_t>();
      return {lo + static_cast<double>(std::min(klo, bins - 1)) * width,
              lo + static_cast<double>(std::min(khi, bins - 1) + 1) * width};
    }
    case ObserverKind::mse: {
      double best = std::numeric_limits<double>::infinity();
      std::pair<double, double> out{lo, hi};
      for (double r : mse_ratios()) {
        const std::pair<double, double> cand =
            folded ? std::pair<double, double>{-r * amax, r * amax}
                   : std::pair<double, double>{r * lo, r * hi};
        const QParams qp = qparams_from_range(at::scalar_tensor(cand.first),
                                              at::scalar_tensor(cand.second), spec);
        const double err =
            (counts * (centers - fake_quantize(centers.to(at::kFloat), qp).to(at::kDouble)).pow(2))
                .sum()
                .item<double>();
        if (err < best) {
          best = err;
          out = cand;
        }
      }
      return out;
    }
    case ObserverKind::entropy: {
      // |x| histogram over [0, amax] from the bin centers.
      std::vector<double> h(bins, 0.0);
      const double aw = amax / static_cast<double>(bins);
      const auto c = centers.accessor<double, 1>();
      const auto n = counts.accessor<double, 1>();
      for (int64_t b = 0; b < bins; ++b) {
        const auto j = std::clamp<int64_t>(static_cast<int64_t>(std::abs(c[b]) / aw), 0, bins - 1);
        h[j] += n[b];
      }
      const int64_t levels = spec.qmax() + 1;
      const int64_t i = kl_threshold_bins(h, levels);
      return as_range((static_cast<double>(i) + 0.5) * aw);
    }
    default: return {lo, hi};
  }
}

std::pair<at::Tensor, at::Tensor> weight_range(const at::Tensor& w_in, const QSpec& spec,
                                               const ObserverOptions& o) {
  at::NoGradGuard no_grad;
  const at::Tensor w = w_in.detach().to(at::kFloat);
  switch (o.kind) {
    case ObserverKind::minmax:
    case ObserverKind::moving_average: return reduce_min_max(w, spec);
    case ObserverKind::percentile: {
      const at::Tensor rows = flat_rows(w, spec);
      const double p = o.percentile / 100.0;
      if (spec.symmetric) {
        const at::Tensor t = row_quantile(rows.abs(), p);
        return {unflat(-t, w.sizes(), spec), unflat(t, w.sizes(), spec)};
      }
      return {unflat(row_quantile(rows, 1 - p), w.sizes(), spec),
              unflat(row_quantile(rows, p), w.sizes(), spec)};
    }
    case ObserverKind::mse: {
      const at::Tensor rows = flat_rows(w, spec);
      at::Tensor lo = std::get<0>(rows.min(1, true)), hi = std::get<0>(rows.max(1, true));
      if (spec.symmetric) {
        hi = at::maximum(lo.abs(), hi.abs());
        lo = -hi;
      }
      at::Tensor best_err, best_lo, best_hi;
      for (double r : mse_ratios()) {
        const at::Tensor err = row_mse(rows, lo * r, hi * r, spec).unsqueeze(1);
        if (!best_err.defined()) {
          best_err = err, best_lo = lo * r, best_hi = hi * r;
          continue;
        }
        const at::Tensor better = err < best_err;
        best_err = at::where(better, err, best_err);
        best_lo = at::where(better, lo * r, best_lo);
        best_hi = at::where(better, hi * r, best_hi);
      }
      return {unflat(best_lo, w.sizes(), spec), unflat(best_hi, w.sizes(), spec)};
    }
    case ObserverKind::entropy: {
      SCULPT_CHECK(spec.granularity == Granularity::per_tensor,
                   "observer entropy works per tensor only; use minmax, percentile or mse for "
                   "per_channel / per_group weights");
      auto [lo, hi] = at::aminmax(w);
      const double l = lo.item<double>(), h = std::max(hi.item<double>(), l + 1e-12);
      const auto r = histogram_range(at::histc(w, kBins, l, h), l, h, spec, o);
      return {at::scalar_tensor(r.first), at::scalar_tensor(r.second)};
    }
  }
  return reduce_min_max(w, spec);
}

bool ActivationObserver::uses_histogram() const {
  return o_.kind == ObserverKind::percentile || o_.kind == ObserverKind::mse ||
         o_.kind == ObserverKind::entropy;
}

void ActivationObserver::add_to_histogram(const at::Tensor& x, double lo, double hi) {
  auto counts = [&](double a, double b) {
    auto h = at::histc(x, kBins, a, b);
    if (comm_) comm_->all_reduce(h, ReduceOp::sum, "a quantize observer's histogram");
    return h;
  };
  if (!hist_.defined()) {
    hist_ = counts(lo, hi);
    lo_ = at::scalar_tensor(lo);
    hi_ = at::scalar_tensor(hi);
    return;
  }
  const double old_lo = lo_.item<double>(), old_hi = hi_.item<double>();
  if (lo < old_lo || hi > old_hi) {
    // Grow the range and move the old counts by their bin centers.
    const double nlo = std::min(lo, old_lo), nhi = std::max(hi, old_hi);
    const double ow = (old_hi - old_lo) / kBins, nw = (nhi - nlo) / kBins;
    const at::Tensor centers = at::arange(kBins, at::kDouble).add_(0.5).mul_(ow).add_(old_lo);
    const at::Tensor idx = centers.sub(nlo).div_(nw).floor_().clamp_(0, kBins - 1).to(at::kLong);
    hist_ = at::zeros({kBins}, at::kFloat).index_add_(0, idx, hist_);
    lo_ = at::scalar_tensor(nlo);
    hi_ = at::scalar_tensor(nhi);
  }
  hist_ += counts(lo_.item<double>(), hi_.item<double>());
}

void ActivationObserver::observe(const at::Tensor& x_in) {
  at::NoGradGuard no_grad;
  const at::Tensor x = x_in.detach().to(at::kFloat);
  auto [blo, bhi] = at::aminmax(x);
  if (comm_) {  // the range of the global batch
    auto r = at::stack({blo.neg(), bhi}).cpu();
    comm_->all_reduce(r, ReduceOp::max, "a quantize observer's range");
    blo = r[0].neg();
    bhi = r[1];
  }
  if (uses_histogram()) {
    double lo = blo.item<double>(), hi = bhi.item<double>();
    if (hi <= lo) hi = lo + 1e-6;
    add_to_histogram(x.cpu(), lo, hi);
    ++batches_;
  } else {
    observe_range(blo.item<float>(), bhi.item<float>());
  }
}

void ActivationObserver::observe_range(float lo, float hi) {
  SCULPT_ASSERT(!uses_histogram(), "observe_range: a histogram observer needs the values");
  // Running range on the host (no tensor arithmetic).
  if (batches_ == 0) {
    lo_f_ = lo, hi_f_ = hi;
  } else if (o_.kind == ObserverKind::moving_average) {
    lo_f_ += (lo - lo_f_) * static_cast<float>(o_.momentum);
    hi_f_ += (hi - hi_f_) * static_cast<float>(o_.momentum);
  } else {
    lo_f_ = std::min(lo_f_, lo);
    hi_f_ = std::max(hi_f_, hi);
  }
  ++batches_;
}

void ActivationObserver::host_qparams(float& scale, float& zero_point) const {
  SCULPT_CHECK(seen(), "observer ", observer_name(o_.kind), ": no data observed yet");
  SCULPT_ASSERT(!uses_histogram(), "host_qparams: a histogram observer's range is a search");
  qparams_of_range(lo_f_, hi_f_, spec_, scale, zero_point);
}

std::pair<at::Tensor, at::Tensor> ActivationObserver::range() const {
  SCULPT_CHECK(seen(), "observer ", observer_name(o_.kind), ": no data observed yet");
  if (!uses_histogram())
    return {at::scalar_tensor(lo_f_, at::kFloat), at::scalar_tensor(hi_f_, at::kFloat)};
  const auto r = histogram_range(hist_, lo_.item<double>(), hi_.item<double>(), spec_, o_);
  return {at::scalar_tensor(r.first), at::scalar_tensor(r.second)};
}

QParams ActivationObserver::qparams() const {
  auto [lo, hi] = range();
  return qparams_from_range(lo, hi, spec_);
}

void ActivationObserver::save(io::NamedTensors& out, const std::string& prefix) const {
  if (!seen()) return;
  if (uses_histogram()) {
    out.emplace_back(prefix + ".lo", lo_);
    out.emplace_back(prefix + ".hi", hi_);
    out.emplace_back(prefix + ".hist", hist_);
    return;
  }
  out.emplace_back(prefix + ".lo", at::scalar_tensor(lo_f_, at::kFloat));
  out.emplace_back(prefix + ".hi", at::scalar_tensor(hi_f_, at::kFloat));
}

void ActivationObserver::load(const std::map<std::string, at::Tensor>& in,
                              const std::string& prefix, int64_t batches) {
  batches_ = batches;
  if (!batches) return;
  auto get = [&](const std::string& k) {
    auto it = in.find(prefix + k);
    SCULPT_CHECK(it != in.end(), "quantize: the saved state has no ", prefix, k);
    return it->second.clone();
  };
  lo_ = get(".lo");
  hi_ = get(".hi");
  lo_f_ = lo_.item<float>();
  hi_f_ = hi_.item<float>();
  if (uses_histogram()) hist_ = get(".hist");
}

}  // namespace sculpt::quant
