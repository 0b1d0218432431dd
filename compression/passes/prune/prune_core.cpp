#include "compression/passes/prune/prune_core.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace sculpt::compression::prune {

namespace {
// The last update step at or before t, for schedules updating every `every` steps from start.
int64_t last_update(const Schedule& s, int64_t t) {
  return s.start + (t - s.start) / s.every * s.every;
}
double fraction_done(const Schedule& s, int64_t t) {
  if (s.end <= s.start) return 1.0;
  return std::clamp(static_cast<double>(last_update(s, t) - s.start) /
                        static_cast<double>(s.end - s.start),
                    0.0, 1.0);
}
int64_t cycle_length(const Schedule& s) {
  return std::max<int64_t>(1, (s.end - s.start) / std::max<int64_t>(1, s.cycles));
}
}  // namespace

double planned_sparsity(const Schedule& s, int64_t t) {
  if (t < s.start) return s.initial;
  if (s.kind == ScheduleKind::one_shot || s.kind == ScheduleKind::rigl) return s.final;
  if (s.kind == ScheduleKind::iterative) {
    const int64_t j = std::min<int64_t>(s.cycles, (t - s.start) / cycle_length(s) + 1);
    return s.initial + (s.final - s.initial) * static_cast<double>(j) / static_cast<double>(s.cycles);
  }
  if (t >= s.end) return s.final;
  const double f = fraction_done(s, t);
  if (s.kind == ScheduleKind::exponential) {
    if (s.initial >= 1.0) return s.initial;
    return 1.0 - (1.0 - s.initial) * std::pow((1.0 - s.final) / (1.0 - s.initial), f);
  }
  // agp
  return s.final + (s.initial - s.final) * std::pow(1.0 - f, 3.0);
}

bool update_due(const Schedule& s, int64_t t) {
  if (t < s.start) return false;
  if (s.kind == ScheduleKind::one_shot) return t == s.start;
  if (s.kind == ScheduleKind::iterative) {
    const int64_t l = cycle_length(s);
    return (t - s.start) % l == 0 && (t - s.start) / l < s.cycles;
  }
  if (s.kind == ScheduleKind::rigl)
    return t == s.start || (t < s.end && (t - s.start) % s.every == 0);
  return t <= s.end && ((t - s.start) % s.every == 0 || t == s.end);
}

double rigl_drop_fraction(const Schedule& s, int64_t t) {
  if (t <= s.start || t >= s.end) return 0.0;
  const double f = static_cast<double>(t - s.start) / static_cast<double>(s.end - s.start);
  return s.rigl_alpha / 2.0 * (1.0 + std::cos(M_PI * f));
}

namespace {
int64_t blocks(int64_t n, int64_t b) { return (n + b - 1) / b; }
}  // namespace

at::Tensor unit_scores(const at::Tensor& scores2d, const Pattern& p) {
  const int64_t r = scores2d.size(0), c = scores2d.size(1);
  if (p.kind == PatternKind::channel) return scores2d.mean(1);
  if (p.kind == PatternKind::head)
    return scores2d.reshape({r, p.heads, c / p.heads}).mean(at::IntArrayRef{0, 2});
  if (p.kind != PatternKind::block) return scores2d;
  const int64_t b = p.block, rb = blocks(r, b), cb = blocks(c, b);
  auto padded = at::constant_pad_nd(scores2d, {0, cb * b - c, 0, rb * b - r}, 0.0);
  auto sums = padded.view({rb, b, cb, b}).sum({1, 3});
  return sums / unit_sizes(r, c, p).to(sums.device(), sums.scalar_type());
}

at::Tensor unit_sizes(int64_t rows, int64_t cols, const Pattern& p) {
  auto opts = at::TensorOptions().dtype(at::kLong);
  if (p.kind == PatternKind::channel) return at::full({rows}, cols, opts);
  if (p.kind == PatternKind::head) return at::full({p.heads}, rows * cols / p.heads, opts);
  if (p.kind != PatternKind::block) return at::ones({rows, cols}, opts);
  const int64_t b = p.block;
  auto side = [&](int64_t n) {
    auto s = at::full({blocks(n, b)}, b, opts);
    s.index_put_({-1}, n - (blocks(n, b) - 1) * b);
    return s;
  };
  return at::outer(side(rows), side(cols));
}

at::Tensor expand_mask(const at::Tensor& unit_mask, int64_t rows, int64_t cols, const Pattern& p) {
  if (p.kind == PatternKind::channel) return unit_mask.unsqueeze(1).expand({rows, cols});
  if (p.kind == PatternKind::head)
    return unit_mask.repeat_interleave(cols / p.heads).unsqueeze(0).expand({rows, cols});
  if (p.kind != PatternKind::block) return unit_mask;
  const int64_t b = p.block;
  return unit_mask.repeat_interleave(b, 0)
      .repeat_interleave(b, 1)
      .slice(0, 0, rows)
      .slice(1, 0, cols);
}

at::Tensor select_units(const at::Tensor& scores, const at::Tensor& sizes, double sparsity,
                        const Pattern& p) {
  if (p.kind == PatternKind::n_m) {
    const int64_t r = scores.size(0), c = scores.size(1);
    SCULPT_CHECK(c % p.m == 0, "n:m pattern needs the weight's columns (", c,
                 ") to be a multiple of m = ", p.m);
    auto groups = scores.reshape({r, c / p.m, p.m});
    auto keep = std::get<1>(groups.topk(p.n, -1));
    return at::zeros({r, c / p.m, p.m}, scores.options().dtype(at::kBool))
        .scatter_(-1, keep, true)
        .view({r, c});
  }
  auto flat_scores = scores.reshape(-1).to(at::kCPU, at::kDouble);
  auto flat_sizes = sizes.reshape(-1).to(at::kCPU);
  const int64_t total = flat_sizes.sum().item<int64_t>();
  const auto target = static_cast<int64_t>(std::floor(sparsity * static_cast<double>(total) + 1e-9));
  auto order = std::get<1>(flat_scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false));
  auto cum = flat_sizes.index_select(0, order).cumsum(0);
  auto drop = order.masked_select(cum.le(target));
  auto mask = at::ones({flat_scores.numel()}, at::TensorOptions().dtype(at::kBool));
  mask.index_fill_(0, drop, false);
  return mask.view(scores.sizes()).to(scores.device());
}

double mask_sparsity(const at::Tensor& unit_mask, const at::Tensor& unit_sizes) {
  auto sizes = unit_sizes.to(unit_mask.device());
  const double total = static_cast<double>(sizes.sum().item<int64_t>());
  const double removed = static_cast<double>(sizes.masked_select(~unit_mask).sum().item<int64_t>());
  return total > 0 ? removed / total : 0.0;
}

std::vector<double> allocate_global(const std::vector<at::Tensor>& scores,
                                    const std::vector<at::Tensor>& sizes, double sparsity,
                                    const std::vector<double>& lo, const std::vector<double>& hi) {
  const size_t n = scores.size();
  std::vector<at::Tensor> s(n), z(n);
  std::vector<double> total(n);
  double all = 0, smin = std::numeric_limits<double>::infinity(), smax = -smin;
  for (size_t i = 0; i < n; ++i) {
    s[i] = scores[i].reshape(-1).to(at::kCPU, at::kDouble);
    z[i] = sizes[i].reshape(-1).to(at::kCPU, at::kDouble);
    total[i] = z[i].sum().item<double>();
    all += total[i];
    auto finite = s[i].masked_select(s[i].isfinite());
    if (finite.numel()) {
      smin = std::min(smin, finite.min().item<double>());
      smax = std::max(smax, finite.max().item<double>());
    }
  }
  auto at_threshold = [&](double tau) {
    std::vector<double> out(n);
    for (size_t i = 0; i < n; ++i) {
      const double removed = z[i].masked_select(s[i].lt(tau)).sum().item<double>();
      out[i] = std::clamp(total[i] > 0 ? removed / total[i] : 0.0, lo[i], hi[i]);
    }
    return out;
  };
  auto removed = [&](const std::vector<double>& f) {
    double r = 0;
    for (size_t i = 0; i < n; ++i) r += f[i] * total[i];
    return r;
  };
  if (!std::isfinite(smin)) return at_threshold(0.0);
  // Bisection on the threshold: the removed count grows with it.
  double a = smin - 1, b = smax + 1;
  const double want = sparsity * all;
  for (int it = 0; it < 80; ++it) {
    const double mid = (a + b) / 2;
    (removed(at_threshold(mid)) <= want ? a : b) = mid;
  }
  // `a` removes at most the budget; shift the rest onto layers still below their cap, in
  // proportion, so that rounding to units does not leave the budget unmet.
  auto f = at_threshold(a);
  double missing = want - removed(f);
  for (size_t i = 0; i < n && missing > 0; ++i) {
    const double extra = std::min(hi[i] - f[i], missing / total[i]);
    if (extra > 0) {
      f[i] += extra;
      missing -= extra * total[i];
    }
  }
  return f;
}

at::Tensor select_shared_units(const std::vector<at::Tensor>& unit_scores,
                               const at::Tensor& unit_sizes, double sparsity, const Pattern& p) {
  at::Tensor sum;
  for (const auto& u : unit_scores) {
    const auto finite = u.masked_select(u.isfinite());
    const double mean = finite.numel() ? finite.abs().mean().item<double>() : 1.0;
    const auto scaled = u / (mean > 0 ? mean : 1.0);
    sum = sum.defined() ? sum + scaled : scaled;
  }
  auto unit = select_units(sum, unit_sizes, sparsity, p);
  if (!unit.any().item<bool>()) unit.view(-1).index_fill_(0, sum.reshape(-1).argmax(), true);
  return unit;
}

at::Tensor rigl_swap(const at::Tensor& unit_mask, const at::Tensor& w2d, const at::Tensor& g2d,
                     double f, const Pattern& p) {
  auto keep = unit_mask.to(at::kCPU).reshape(-1).clone();
  const int64_t active = keep.sum().item<int64_t>();
  const auto k = static_cast<int64_t>(std::floor(f * static_cast<double>(active)));
  if (k <= 0) return {};
  const double inf = std::numeric_limits<double>::infinity();
  auto mag = unit_scores(w2d.abs().to(at::kFloat), p).to(at::kCPU, at::kDouble).reshape(-1);
  auto grow = unit_scores(g2d.abs().to(at::kFloat), p).to(at::kCPU, at::kDouble).reshape(-1);
  auto dropped = std::get<1>(mag.masked_fill(keep.logical_not(), inf).topk(k, 0, false));
  auto candidates = grow.masked_fill(keep, -inf);  // inactive before this update
  auto grown = std::get<1>(candidates.topk(k, 0, true));
  keep.index_fill_(0, dropped, false);
  keep.index_fill_(0, grown, true);
  return keep.view(unit_mask.sizes());
}

std::string pattern_label(const Pattern& p) {
  switch (p.kind) {
    case PatternKind::n_m: return std::to_string(p.n) + ":" + std::to_string(p.m);
    case PatternKind::block: return "block " + std::to_string(p.block) + "x" + std::to_string(p.block);
    case PatternKind::head: return std::to_string(p.heads) + " heads";
    default: return config::spelling(kPatternKinds, p.kind);
  }
}

double sparse_fp32_bytes(int64_t rows, int64_t cols, double sparsity, const Pattern& p) {
  const double n = static_cast<double>(rows * cols), kept = n * (1 - sparsity);
  if (p.kind == PatternKind::channel) return kept * 4;
  if (p.kind == PatternKind::block) {
    const double b = static_cast<double>(p.block), blocks = std::ceil(kept / (b * b));
    return kept * 4 + blocks * 8 + (std::ceil(static_cast<double>(rows) / b) + 1) * 8;
  }
  return std::ceil(n / 8) + kept * 4;
}

std::vector<at::Tensor> allocate_units(const Allocation& a) {
  std::vector<at::Tensor> units;
  const size_t n = a.layers.size();
  if (a.shared_stream) {
    const auto unit = select_shared_units(a.unit_scores, a.layers.front().sizes, a.target,
                                          a.layers.front().pattern);
    for (size_t i = 0; i < n; ++i) units.push_back(unit.clone());
    return units;
  }
  std::vector<double> share(n, a.target);
  if (a.shared_budget) {
    std::vector<at::Tensor> sizes;
    std::vector<double> lo, hi;
    for (const auto& l : a.layers) {
      sizes.push_back(l.sizes);
      lo.push_back(std::min(l.min_sparsity, a.target));  // a floor, never above the plan
      hi.push_back(l.max_sparsity);
    }
    share = allocate_global(a.unit_scores, sizes, a.target, lo, hi);
  }
  for (size_t i = 0; i < n; ++i) {
    auto unit = select_units(a.unit_scores[i], a.layers[i].sizes, share[i], a.layers[i].pattern);
    if (!unit.any().item<bool>())  // never remove a whole layer
      unit.view(-1).index_fill_(0, a.unit_scores[i].reshape(-1).argmax(), true);
    units.push_back(unit);
  }
  return units;
}

at::Tensor pack_bits(const at::Tensor& mask) {
  auto flat = mask.reshape(-1).to(at::kCPU, at::kByte);
  const int64_t n = flat.numel(), padded = (n + 7) / 8 * 8;
  flat = at::constant_pad_nd(flat, {0, padded - n}, 0).view({-1, 8});
  auto weights = at::pow(2, at::arange(8, at::TensorOptions().dtype(at::kInt))).to(at::kByte);
  return (flat * weights).sum(1).to(at::kByte);
}

at::Tensor unpack_bits(const at::Tensor& packed, at::IntArrayRef shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  SCULPT_CHECK(packed.numel() * 8 >= n, "a packed mask of ", packed.numel(),
               " bytes is too short for shape ", shape);
  auto weights = at::pow(2, at::arange(8, at::TensorOptions().dtype(at::kInt))).to(at::kByte);
  auto bits = packed.to(at::kCPU, at::kByte).unsqueeze(1).bitwise_and(weights).ne(0);
  return bits.reshape(-1).slice(0, 0, n).reshape(shape).clone();
}

}  // namespace sculpt::compression::prune
