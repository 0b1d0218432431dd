// CPU fake quantization, one pass forward and one pass backward (at::vec, at::parallel_for).
// Compiled once per instruction set (kernels/cpu/capability.h); SCULPT_CPU_NS names the copy.
//
// Variants, by the [outer, channels, inner] layout (fake_quant_impl.h):
//   rows           inner > 1: each (outer, channel) row has one scale; the row is cut into
//                  segments of kSegment elements, the unit of parallel work and, backward, of one
//                  partial LSQ sum each (fixed segments: the sums do not depend on the threads).
//   channels-last  inner == 1 and channels > 1 (per channel on the last axis): the scales vary
//                  along the row, loaded as vectors; work is chunks of kChunkRows rows.
// Arithmetic as ATen's fake_quantize_*: t = x * (1/s) in float (double for double inputs),
// q = nearbyint(t) (half to even), y = clamp(q, qmin - z, qmax - z) * s, which equals
// (clamp(q + z, qmin, qmax) - z) * s for the integer z. LSQ partials: dy * (clamp(q) - t) inside
// the grid, dy * clamp(q) outside (that is qmin - z or qmax - z); zero point: dy * -s outside.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/fake_quant/fake_quant_impl.h"

#ifndef SCULPT_CPU_NS
#define SCULPT_CPU_NS cpu_default
#endif

namespace sculpt::kernels::fq::SCULPT_CPU_NS {

namespace {

using at::vec::Vectorized;
constexpr int64_t kSegment = 16384;
constexpr int64_t kChunkRows = 64;

template <class T>
struct Compute {
  using type = float;
};
template <>
struct Compute<double> {
  using type = double;
};

// Two compute vectors per step: loads and stores in the storage type T.
template <class T>
struct Lanes {
  using C = typename Compute<T>::type;
  using V = Vectorized<C>;
  static constexpr int64_t kStep = 2 * V::size();
  static void load(const T* p, V& a, V& b) {
    if constexpr (std::is_same_v<T, C>) {
      a = V::loadu(p);
      b = V::loadu(p + V::size());
    } else {
      std::tie(a, b) = at::vec::convert_to_float<T>(Vectorized<T>::loadu(p));
    }
  }
  static void store(T* p, const V& a, const V& b) {
    if constexpr (std::is_same_v<T, C>) {
      a.store(p);
      b.store(p + V::size());
    } else {
      at::vec::convert_from_float<T>(a, b).store(p);
    }
  }
};

// Per-channel constants in the compute type.
template <class C>
struct Params {
  std::vector<C> s, inv, lo, hi;
  Params(const C* scale, const C* zp, const Layout& l) {
    const auto n = static_cast<size_t>(l.channels);
    s.resize(n), inv.resize(n), lo.resize(n), hi.resize(n);
    for (size_t c = 0; c < n; ++c) {
      s[c] = static_cast<C>(scale[c]);
      inv[c] = static_cast<C>(1) / s[c];
      lo[c] = static_cast<C>(l.qmin) - static_cast<C>(zp[c]);
      hi[c] = static_cast<C>(l.qmax) - static_cast<C>(zp[c]);
    }
  }
};

// Work item w of the rows variant: a segment of row w / segs.
struct Segment {
  int64_t channel, begin, size;
  Segment(int64_t w, int64_t segs, const Layout& l) {
    const int64_t row = w / segs, seg = w % segs;
    channel = row % l.channels;
    begin = row * l.inner + seg * kSegment;
    size = std::min(kSegment, l.inner - seg * kSegment);
  }
};

template <class C>
inline C fq_scalar(C x, C s, C inv, C lo, C hi) {
  const C q = std::nearbyint(x * inv);
  return std::min(std::max(q, lo), hi) * s;
}

// y = fake quantization of x[0, n) with one scale. Track: returns whether every grid value was
// inside [lo, hi] (a NaN counts as outside, as in the backward); otherwise returns true. Tracked
// as the bits of q - clamp(q), zero only inside (NaN for a NaN q).
// Clamp false: the caller knows every grid value is inside (clamping would change nothing).
template <class T, bool Track, bool Clamp = true>
bool fq_span(const T* x, T* y, int64_t n, typename Lanes<T>::C s, typename Lanes<T>::C inv,
             typename Lanes<T>::C lo, typename Lanes<T>::C hi) {
  using L = Lanes<T>;
  using C = typename L::C;
  using V = typename L::V;
  const V vs(s), vinv(inv), vlo(lo), vhi(hi);
  V off(0);
  int64_t i = 0;
  for (; i + L::kStep <= n; i += L::kStep) {
    V a, b;
    L::load(x + i, a, b);
    a = (a * vinv).round();
    b = (b * vinv).round();
    if constexpr (Clamp) {
      const V ca = at::vec::clamp(a, vlo, vhi), cb = at::vec::clamp(b, vlo, vhi);
      if constexpr (Track) off = off | (a - ca) | (b - cb);
      a = ca, b = cb;
    }
    L::store(y + i, a * vs, b * vs);
  }
  if constexpr (std::is_same_v<T, C>) {  // one more vector of the tail
    if (i + V::size() <= n) {
      const V a = (V::loadu(x + i) * vinv).round();
      const V ca = Clamp ? at::vec::clamp(a, vlo, vhi) : a;
      if constexpr (Track) off = off | (a - ca);
      (ca * vs).store(y + i);
      i += V::size();
    }
  }
  bool inside = true;
  for (; i < n; ++i) {
    const C q = std::nearbyint(static_cast<C>(x[i]) * inv);
    if constexpr (Track) inside = inside && q >= lo && q <= hi;
    y[i] = static_cast<T>((Clamp ? std::min(std::max(q, lo), hi) : q) * s);
  }
  if constexpr (Track) inside = inside && off.zero_mask() == (1 << V::size()) - 1;
  return inside;
}

template <class T>
void forward_typed(const T* x, T* y, const Params<typename Lanes<T>::C>& p, const Layout& l) {
  using L = Lanes<T>;
  using C = typename L::C;
  using V = typename L::V;
  if (l.inner == 1 && l.channels > 1) {  // channels last
    const int64_t nc = l.channels;
    at::parallel_for(0, l.outer, kChunkRows, [&](int64_t begin, int64_t end) {
      for (int64_t o = begin; o < end; ++o) {
        const T* xr = x + o * nc;
        T* yr = y + o * nc;
        int64_t c = 0;
        for (; c + L::kStep <= nc; c += L::kStep) {
          V a, b;
          L::load(xr + c, a, b);
          const int64_t k = V::size();
          a = at::vec::clamp((a * V::loadu(&p.inv[c])).round(), V::loadu(&p.lo[c]),
                             V::loadu(&p.hi[c])) * V::loadu(&p.s[c]);
          b = at::vec::clamp((b * V::loadu(&p.inv[c + k])).round(), V::loadu(&p.lo[c + k]),
                             V::loadu(&p.hi[c + k])) * V::loadu(&p.s[c + k]);
          L::store(yr + c, a, b);
        }
        for (; c < nc; ++c)
          yr[c] = static_cast<T>(fq_scalar<C>(static_cast<C>(xr[c]), p.s[c], p.inv[c], p.lo[c], p.hi[c]));
      }
    });
    return;
  }
  const int64_t segs = (l.inner + kSegment - 1) / kSegment;
  at::parallel_for(0, l.outer * l.channels * segs, 1, [&](int64_t begin, int64_t end) {
    for (int64_t w = begin; w < end; ++w) {
      const Segment sg(w, segs, l);
      const int64_t ch = sg.channel;
      fq_span<T, false>(x + sg.begin, y + sg.begin, sg.size, p.s[ch], p.inv[ch], p.lo[ch], p.hi[ch]);
    }
  });
}

// min and max of x[0, n), n > 0; a NaN anywhere makes both NaN (as at::aminmax).
void exact_range(const float* x, int64_t n, float& lo, float& hi) {
  float l = std::numeric_limits<float>::infinity(), h = -l;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(x[i])) {
      lo = hi = std::numeric_limits<float>::quiet_NaN();
      return;
    }
    l = std::min(l, x[i]);
    h = std::max(h, x[i]);
  }
  lo = l, hi = h;
}

// The same, vectorized with plain min / max; the bits of x - x (zero unless x is NaN or
// infinite) send spans with such values to exact_range.
void span_range(const float* x, int64_t n, float& lo, float& hi) {
  using V = Vectorized<float>;
  constexpr int64_t k = V::size();
  if (n < 2 * k) return exact_range(x, n, lo, hi);
  V l0 = V::loadu(x), l1 = V::loadu(x + k), h0 = l0, h1 = l1;
  V bad = (l0 - l0) | (l1 - l1);
  int64_t i = 2 * k;
  for (; i + 2 * k <= n; i += 2 * k) {
    const V a = V::loadu(x + i), b = V::loadu(x + i + k);
    l0 = at::vec::clamp_max(l0, a), l1 = at::vec::clamp_max(l1, b);
    h0 = at::vec::clamp_min(h0, a), h1 = at::vec::clamp_min(h1, b);
    bad = bad | (a - a) | (b - b);
  }
  if (i + k <= n) {  // one more vector of the tail
    const V a = V::loadu(x + i);
    l0 = at::vec::clamp_max(l0, a), h0 = at::vec::clamp_min(h0, a);
    bad = bad | (a - a);
    i += k;
  }
  float l = at::vec::vec_reduce_all<float>(
      [](const V& a, const V& b) { return at::vec::clamp_max(a, b); }, at::vec::clamp_max(l0, l1));
  float h = at::vec::vec_reduce_all<float>(
      [](const V& a, const V& b) { return at::vec::clamp_min(a, b); }, at::vec::clamp_min(h0, h1));
  bool finite = bad.zero_mask() == (1 << k) - 1;
  for (; i < n; ++i) {
    finite = finite && std::isfinite(x[i]);
    l = std::min(l, x[i]);
    h = std::max(h, x[i]);
  }
  if (!finite) return exact_range(x, n, lo, hi);
  lo = l, hi = h;
}

// Ranges that may hold NaN: NaN wins, as in span_range.
inline void merge_range(float& lo, float& hi, float l, float h) {
  if (std::isnan(lo) || std::isnan(l)) {
    lo = hi = std::numeric_limits<float>::quiet_NaN();
    return;
  }
  lo = std::min(lo, l), hi = std::max(hi, h);
}

// The zero point as the operator uses it: rounded half to even, clamped to the grid.
inline float prepared_zero_point(float z, int64_t qmin, int64_t qmax) {
  return std::min(std::max(std::nearbyint(z), static_cast<float>(qmin)), static_cast<float>(qmax));
}

// LSQ sums of one vector step, accumulated into ds / dz.
template <class V>
inline V step_backward(const V& x, const V& dy, const V& s, const V& inv, const V& lo, const V& hi,
                       V& ds, V& dz, bool lsq) {
  const V t = x * inv;
  const V q = t.round();
  const V inside = (q >= lo) & (q <= hi);
  const V zero(0);
  if (lsq) {
    const V qc = at::vec::clamp(q, lo, hi);
    ds = at::vec::fmadd(dy, qc - V::blendv(zero, t, inside), ds);
    dz = dz - V::blendv(dy * s, zero, inside);
  }
  return V::blendv(zero, dy, inside);
}

template <class C>
inline C scalar_backward(C x, C dy, C s, C inv, C lo, C hi, C& ds, C& dz, bool lsq) {
  const C t = x * inv;
  const C q = std::nearbyint(t);
  const bool inside = q >= lo && q <= hi;
  if (lsq) {
    ds += dy * (std::min(std::max(q, lo), hi) - (inside ? t : C(0)));
    dz -= inside ? C(0) : dy * s;
  }
  return inside ? dy : C(0);
}

template <class V>
inline typename V::value_type sum_lanes(const V& v) {
  return at::vec::vec_reduce_all<typename V::value_type>(
      [](const V& a, const V& b) { return a + b; }, v);
}

// dx, and per work item partial LSQ sums (partial_s / partial_z: [items], item -> channel).
template <class T>
void backward_typed(const T* dy, const T* x, T* dx, const Params<typename Lanes<T>::C>& p,
                    const Layout& l, bool lsq, std::vector<double>& ps, std::vector<double>& pz,
                    int64_t& items, int64_t& per_item) {
  using L = Lanes<T>;
  using C = typename L::C;
  using V = typename L::V;
  if (l.inner == 1 && l.channels > 1) {  // channels last: partials [chunks, channels]
    const int64_t nc = l.channels, chunks = (l.outer + kChunkRows - 1) / kChunkRows;
    items = chunks;
    per_item = nc;
    if (lsq) ps.assign(static_cast<size_t>(chunks * nc), 0.0), pz.assign(ps.size(), 0.0);
    at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
      std::vector<C> as(lsq ? nc : 0), az(lsq ? nc : 0);
      for (int64_t chunk = begin; chunk < end; ++chunk) {
        std::fill(as.begin(), as.end(), C(0));
        std::fill(az.begin(), az.end(), C(0));
        for (int64_t o = chunk * kChunkRows; o < std::min(l.outer, (chunk + 1) * kChunkRows); ++o) {
          const T *xr = x + o * nc, *gr = dy + o * nc;
          T* dr = dx + o * nc;
          int64_t c = 0;
          for (; c + L::kStep <= nc; c += L::kStep) {
            V xa, xb, ga, gb;
            L::load(xr + c, xa, xb);
            L::load(gr + c, ga, gb);
            const int64_t k = V::size();
            V sa = lsq ? V::loadu(&as[c]) : V(0), sb = lsq ? V::loadu(&as[c + k]) : V(0);
            V za = lsq ? V::loadu(&az[c]) : V(0), zb = lsq ? V::loadu(&az[c + k]) : V(0);
            const V oa = step_backward(xa, ga, V::loadu(&p.s[c]), V::loadu(&p.inv[c]),
                                       V::loadu(&p.lo[c]), V::loadu(&p.hi[c]), sa, za, lsq);
            const V ob = step_backward(xb, gb, V::loadu(&p.s[c + k]), V::loadu(&p.inv[c + k]),
                                       V::loadu(&p.lo[c + k]), V::loadu(&p.hi[c + k]), sb, zb, lsq);
            L::store(dr + c, oa, ob);
            if (lsq) sa.store(&as[c]), sb.store(&as[c + k]), za.store(&az[c]), zb.store(&az[c + k]);
          }
          for (; c < nc; ++c) {
            C s0 = 0, z0 = 0;
            dr[c] = static_cast<T>(scalar_backward<C>(static_cast<C>(xr[c]), static_cast<C>(gr[c]),
                                                      p.s[c], p.inv[c], p.lo[c], p.hi[c], s0, z0, lsq));
            if (lsq) as[c] += s0, az[c] += z0;
          }
        }
        if (lsq)
          for (int64_t c = 0; c < nc; ++c)
            ps[chunk * nc + c] = as[c], pz[chunk * nc + c] = az[c];
      }
    });
    return;
  }
  const int64_t segs = (l.inner + kSegment - 1) / kSegment;
  items = l.outer * l.channels * segs;
  per_item = 1;
  if (lsq) ps.assign(static_cast<size_t>(items), 0.0), pz.assign(ps.size(), 0.0);
  at::parallel_for(0, items, 1, [&](int64_t begin, int64_t end) {
    for (int64_t w = begin; w < end; ++w) {
      const Segment sg(w, segs, l);
      const int64_t ch = sg.channel, i0 = sg.begin, n = sg.size;
      const C s = p.s[ch], inv = p.inv[ch], lo = p.lo[ch], hi = p.hi[ch];
      const V vs(s), vinv(inv), vlo(lo), vhi(hi);
      V sa(0), sb(0), za(0), zb(0);
      const T *xr = x + i0, *gr = dy + i0;
      T* dr = dx + i0;
      int64_t i = 0;
      for (; i + L::kStep <= n; i += L::kStep) {
        V xa, xb, ga, gb;
        L::load(xr + i, xa, xb);
        L::load(gr + i, ga, gb);
        L::store(dr + i, step_backward(xa, ga, vs, vinv, vlo, vhi, sa, za, lsq),
                 step_backward(xb, gb, vs, vinv, vlo, vhi, sb, zb, lsq));
      }
      C ts = 0, tz = 0;
      for (; i < n; ++i)
        dr[i] = static_cast<T>(scalar_backward<C>(static_cast<C>(xr[i]), static_cast<C>(gr[i]), s,
                                                  inv, lo, hi, ts, tz, lsq));
      if (lsq) {
        ps[w] = static_cast<double>(sum_lanes(sa + sb)) + ts;
        pz[w] = static_cast<double>(sum_lanes(za + zb)) + tz;
      }
    }
  });
}

}  // namespace

void forward(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zp, const Layout& l,
             at::Tensor& y) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sculpt::fake_quant", [&] {
    using C = typename Lanes<scalar_t>::C;
    const Params<C> p(scale.const_data_ptr<C>(), zp.const_data_ptr<C>(), l);
    forward_typed<scalar_t>(x.const_data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), p, l);
  });
}

void backward(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& scale,
              const at::Tensor& zp, const Layout& l, at::Tensor& dx, double* dscale, double* dzp) {
  const bool lsq = dscale != nullptr;
  std::vector<double> ps, pz;
  int64_t items = 0, per_item = 1;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sculpt::fake_quant_backward", [&] {
    using C = typename Lanes<scalar_t>::C;
    const Params<C> p(scale.const_data_ptr<C>(), zp.const_data_ptr<C>(), l);
    backward_typed<scalar_t>(dy.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                             dx.data_ptr<scalar_t>(), p, l, lsq, ps, pz, items, per_item);
  });
  if (!lsq) return;
  // Fixed-order sums of the partials: channel of an item (rows) or of a column (channels last).
  if (per_item > 1) {
    for (int64_t it = 0; it < items; ++it)
      for (int64_t c = 0; c < per_item; ++c)
        dscale[c] += ps[it * per_item + c], dzp[c] += pz[it * per_item + c];
  } else {
    const int64_t segs = (l.inner + kSegment - 1) / kSegment;
    for (int64_t it = 0; it < items; ++it) {
      const int64_t ch = (it / segs) % l.channels;
      dscale[ch] += ps[it];
      dzp[ch] += pz[it];
    }
  }
}

// The forward of one span with derived qparams. x * inv and rounding are monotonic (inv > 0), so
// when the span's extremes [xlo, xhi] land inside the grid every value does: no clamp and no
// tracking then (the same y). Otherwise (or NaN anywhere) the tracked, clamped path.
bool quantize_span(const float* x, float* y, int64_t n, float s, float z, int64_t qmin,
                   int64_t qmax, bool ranged, float xlo, float xhi) {
  const float inv = 1.0f / s, lo = static_cast<float>(qmin) - z, hi = static_cast<float>(qmax) - z;
  if (ranged && inv > 0 && std::nearbyint(xlo * inv) >= lo && std::nearbyint(xhi * inv) <= hi) {
    fq_span<float, false, false>(x, y, n, s, inv, lo, hi);
    return true;
  }
  return fq_span<float, true>(x, y, n, s, inv, lo, hi);
}

bool forward_rows(const float* x, float* y, int64_t rows, int64_t inner, int64_t qmin,
                  int64_t qmax, float* scale, float* zp, const RowQParams* derive) {
  std::atomic<bool> inside{true};
  if (rows == 1) {  // one range: partial ranges of fixed segments, merged in order
    const int64_t segs = (inner + kSegment - 1) / kSegment;
    auto seg_size = [&](int64_t g) { return std::min(kSegment, inner - g * kSegment); };
    float lo = 0, hi = 0;
    if (derive) {
      std::vector<float> pl(static_cast<size_t>(segs)), ph(pl.size());
      at::parallel_for(0, segs, 1, [&](int64_t begin, int64_t end) {
        for (int64_t g = begin; g < end; ++g) span_range(x + g * kSegment, seg_size(g), pl[g], ph[g]);
      });
      lo = pl[0], hi = ph[0];
      for (int64_t g = 1; g < segs; ++g) merge_range(lo, hi, pl[g], ph[g]);
      (*derive)(0, lo, hi, scale[0], zp[0]);
    }
    const float z = prepared_zero_point(zp[0], qmin, qmax);
    if (derive) zp[0] = z;
    at::parallel_for(0, segs, 1, [&](int64_t begin, int64_t end) {
      for (int64_t g = begin; g < end; ++g)
        if (!quantize_span(x + g * kSegment, y + g * kSegment, seg_size(g), scale[0], z, qmin, qmax,
                           derive != nullptr, lo, hi))
          inside = false;
    });
    return inside;
  }
  // Rows: each row's range, qparams and forward together, while the row is in cache.
  const int64_t grain = std::max<int64_t>(1, kSegment / std::max<int64_t>(inner, 1));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = x + r * inner;
      float lo = 0, hi = 0;
      if (derive) {
        span_range(xr, inner, lo, hi);
        (*derive)(r, lo, hi, scale[r], zp[r]);
      }
      const float z = prepared_zero_point(zp[r], qmin, qmax);
      if (derive) zp[r] = z;
      if (!quantize_span(xr, y + r * inner, inner, scale[r], z, qmin, qmax, derive != nullptr, lo, hi))
        inside = false;
    }
  });
  return inside;
}

}  // namespace sculpt::kernels::fq::SCULPT_CPU_NS
