// CPU block-sparse GEMM (at::vec, at::parallel_for), compiled once per instruction set
// (kernels/cpu/capability.h); SCULPT_CPU_NS names the copy.
//
// forward   y = x W^T in the natural layouts (x [n, cols], y [n, rows]: no transposes of x or
//           y). Work item = (block row r, range of kRange tokens). Each kept block is transposed
//           once into a b x b buffer (W_k^T, rows along the outputs) and its x columns packed,
//           then register blocks of MT tokens x b outputs (NV = b / vector width vectors each)
//           take its b input columns: per column NV loads and MT broadcasts of x feed MT * NV
//           FMAs. The chunk's y rows stay in L1 across the blocks of the row. Block sizes that
//           are not a multiple of the vector width run plain loops (bsr_gemm.cpp sends 8 x 8
//           float blocks to the AVX2 copy, whose vectors are 8 wide, on AVX-512 machines).
// block_grad  dW_k = dY_r^T X_c for the kept blocks only: kRows x kCols dot products of length
//           n at a time (kRows + kCols loads per kRows * kCols FMAs); parallel over blocks.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <vector>

#include "kernels/bsr_gemm/bsr_gemm_impl.h"

#ifndef SCULPT_CPU_NS
#define SCULPT_CPU_NS cpu_default
#endif

namespace sculpt::kernels::bsr::SCULPT_CPU_NS {

namespace {

using at::vec::Vectorized;
constexpr int64_t kRows = 4;  // block_grad: output rows per register block
constexpr int64_t kCols = 4;  // block_grad: input columns per register block

// Token rows per work item (the unit of parallel work, with one block row) and per packed x
// panel inside it.
constexpr int64_t kRange = 256;
constexpr int64_t kChunk = 64;

// Accumulator vectors one register block may use (16 of 32 zmm, 8 of 16 ymm registers).
template <class T>
constexpr int64_t acc_budget() {
  return Vectorized<T>::size() * sizeof(T) >= 64 ? 16 : 8;
}

// MT tokens x (NV vectors = b outputs): y[t][i] += sum_j x[t][c b + j] wt[j][i], wt = W_k^T.
template <class T, int64_t NV, int64_t MT>
inline void block_tokens(const T* wt, const T* x, int64_t ldx, T* y, int64_t ldy, int64_t b) {
  using V = Vectorized<T>;
  V acc[MT][NV];
  for (int64_t m = 0; m < MT; ++m)
    for (int64_t u = 0; u < NV; ++u) acc[m][u] = V::loadu(y + m * ldy + u * V::size());
  for (int64_t j = 0; j < b; ++j) {
    V w[NV];
    for (int64_t u = 0; u < NV; ++u) w[u] = V::loadu(wt + j * b + u * V::size());
    for (int64_t m = 0; m < MT; ++m) {
      const V xv(x[m * ldx + j]);
      for (int64_t u = 0; u < NV; ++u) acc[m][u] = at::vec::fmadd(xv, w[u], acc[m][u]);
    }
  }
  for (int64_t m = 0; m < MT; ++m)
    for (int64_t u = 0; u < NV; ++u) acc[m][u].store(y + m * ldy + u * V::size());
}

// One block row r over tokens [t0, t1) (at most kRange). The range's y rows accumulate in yc
// and each block's x columns are packed into xp, panels of kChunk tokens, both with rows b
// apart: x and y rows themselves lie cols (rows) floats apart, a power of two for usual layers,
// which would put the MT rows of a register block into one L1 set. Each kept block is
// transposed once per range into wt.
template <class T, int64_t NV>
void row_range(const View& w, const T* vals, const T* x, const T* bias, T* y, int64_t r, int64_t t0,
               int64_t t1, T* wt, T* xp, T* yc) {
  constexpr int64_t MT = std::max<int64_t>(1, std::min<int64_t>(8, acc_budget<T>() / std::max<int64_t>(NV, 1)));
  const int64_t b = w.block, nt = t1 - t0;
  for (int64_t t = 0; t < nt; ++t)
    for (int64_t i = 0; i < b; ++i) yc[t * b + i] = bias ? bias[r * b + i] : T(0);
  for (int64_t k = w.crow[r]; k < w.crow[r + 1]; ++k) {
    const T* v = vals + k * b * b;
    for (int64_t i = 0; i < b; ++i)
      for (int64_t j = 0; j < b; ++j) wt[j * b + i] = v[i * b + j];
    const int64_t c = w.col[k];
    for (int64_t p0 = 0; p0 < nt; p0 += kChunk) {
      const int64_t pn = std::min(kChunk, nt - p0);
      for (int64_t t = 0; t < pn; ++t) {
        const T* xr = x + (t0 + p0 + t) * w.cols + c * b;
        std::copy(xr, xr + b, xp + t * b);
      }
      T* yp = yc + p0 * b;
      int64_t t = 0;
      if constexpr (NV > 0) {
        for (; t + MT <= pn; t += MT) block_tokens<T, NV, MT>(wt, xp + t * b, b, yp + t * b, b, b);
        for (; t < pn; ++t) block_tokens<T, NV, 1>(wt, xp + t * b, b, yp + t * b, b, b);
      } else {  // other block sizes: plain loops
        for (; t < pn; ++t)
          for (int64_t j = 0; j < b; ++j)
            for (int64_t i = 0; i < b; ++i) yp[t * b + i] += xp[t * b + j] * wt[j * b + i];
      }
    }
  }
  for (int64_t t = 0; t < nt; ++t)
    std::copy(yc + t * b, yc + t * b + b, y + (t0 + t) * w.rows + r * b);
}

template <class T>
void forward_typed(const View& w, const T* vals, const T* x, const T* bias, T* y, int64_t n) {
  const int64_t b = w.block, brows = w.rows / b, chunks = (n + kRange - 1) / kRange;
  const int64_t nv = b % Vectorized<T>::size() == 0 ? b / Vectorized<T>::size() : 0;
  at::parallel_for(0, brows * chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> wt(static_cast<size_t>(b * b)), xp(static_cast<size_t>(kChunk * b)),
        yc(static_cast<size_t>(kRange * b));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t r = item / chunks, t0 = (item % chunks) * kRange, t1 = std::min(n, t0 + kRange);
      switch (nv) {
        case 1: row_range<T, 1>(w, vals, x, bias, y, r, t0, t1, wt.data(), xp.data(), yc.data()); break;
        case 2: row_range<T, 2>(w, vals, x, bias, y, r, t0, t1, wt.data(), xp.data(), yc.data()); break;
        case 4: row_range<T, 4>(w, vals, x, bias, y, r, t0, t1, wt.data(), xp.data(), yc.data()); break;
        case 8: row_range<T, 8>(w, vals, x, bias, y, r, t0, t1, wt.data(), xp.data(), yc.data()); break;
        default: row_range<T, 0>(w, vals, x, bias, y, r, t0, t1, wt.data(), xp.data(), yc.data()); break;
      }
    }
  });
}

// The tiles variant (small blocks): y^T = W x^T over tiles of kT batch columns (x^T and y^T
// tile-major, transposed by the caller): for every kept block and group of kRows output rows,
// kRows x kVecs accumulators take the block's b x^T rows one after another (the weight is the
// broadcast, the batch the vector). Vector use does not depend on b, so blocks of 8 or 16 run
// well here, where the natural-layout kernel's vectors along b would be short or empty.
template <class T>
constexpr int64_t vecs_per_tile() {
  return Vectorized<T>::size() * sizeof(T) >= 64 ? 4 : 2;
}
template <class T>
constexpr int64_t tile_of() {
  return vecs_per_tile<T>() * Vectorized<T>::size();
}

// Rows i0 .. i0 + R - 1 of block k: y[i][t] += sum_j v[i][j] x[j][t] over one tile.
template <class T, int64_t R>
inline void block_rows(const T* v, int64_t b, const T* xb, T* yb, int64_t i0) {
  using V = Vectorized<T>;
  constexpr int64_t NV = vecs_per_tile<T>(), kT = tile_of<T>();
  V acc[R][NV];
  for (int64_t m = 0; m < R; ++m)
    for (int64_t u = 0; u < NV; ++u) acc[m][u] = V::loadu(yb + (i0 + m) * kT + u * V::size());
  for (int64_t j = 0; j < b; ++j) {
    V xv[NV];
    for (int64_t u = 0; u < NV; ++u) xv[u] = V::loadu(xb + j * kT + u * V::size());
    for (int64_t m = 0; m < R; ++m) {
      const V w(v[(i0 + m) * b + j]);
      for (int64_t u = 0; u < NV; ++u) acc[m][u] = at::vec::fmadd(w, xv[u], acc[m][u]);
    }
  }
  for (int64_t m = 0; m < R; ++m)
    for (int64_t u = 0; u < NV; ++u) acc[m][u].store(yb + (i0 + m) * kT + u * V::size());
}

template <class T>
void forward_tiles_typed(const View& w, const T* vals, const T* xt, T* yt, int64_t tiles) {
  constexpr int64_t kT = tile_of<T>();
  const int64_t b = w.block, brows = w.rows / b;
  at::parallel_for(0, tiles * brows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t tile = item / brows, r = item % brows;
      const T* xtile = xt + tile * w.cols * kT;
      T* yb = yt + (tile * w.rows + r * b) * kT;
      for (int64_t k = w.crow[r]; k < w.crow[r + 1]; ++k) {
        const T* v = vals + k * b * b;
        const T* xb = xtile + w.col[k] * b * kT;
        int64_t i = 0;
        for (; i + kRows <= b; i += kRows) block_rows<T, kRows>(v, b, xb, yb, i);
        for (; i < b; ++i) block_rows<T, 1>(v, b, xb, yb, i);
      }
    }
  });
}


template <class V>
inline typename V::value_type sum_lanes(const V& v) {
  return at::vec::vec_reduce_all<typename V::value_type>(
      [](const V& a, const V& c) { return a + c; }, v);
}

// dv[i][j] for rows i0.. (R of them) and columns j0.. (C of them): dot products over n.
template <class T, int64_t R, int64_t C>
inline void grad_tile(const T* dy, const T* x, int64_t n, int64_t b, T* dv, int64_t i0, int64_t j0) {
  using V = Vectorized<T>;
  V acc[R][C];
  for (int64_t m = 0; m < R; ++m)
    for (int64_t c = 0; c < C; ++c) acc[m][c] = V(0);
  int64_t t = 0;
  for (; t + V::size() <= n; t += V::size()) {
    V xv[C];
    for (int64_t c = 0; c < C; ++c) xv[c] = V::loadu(x + (j0 + c) * n + t);
    for (int64_t m = 0; m < R; ++m) {
      const V g = V::loadu(dy + (i0 + m) * n + t);
      for (int64_t c = 0; c < C; ++c) acc[m][c] = at::vec::fmadd(g, xv[c], acc[m][c]);
    }
  }
  for (int64_t m = 0; m < R; ++m)
    for (int64_t c = 0; c < C; ++c) {
      T s = sum_lanes(acc[m][c]);
      for (int64_t u = t; u < n; ++u) s += dy[(i0 + m) * n + u] * x[(j0 + c) * n + u];
      dv[(i0 + m) * b + j0 + c] = s;
    }
}

template <class T>
void block_grad_typed(const View& w, const T* dyt, const T* xt, int64_t n, T* dv, int64_t nnz) {
  const int64_t b = w.block, brows = w.rows / b;
  // Block k's block row: a search in crow (blocks of one row are contiguous).
  at::parallel_for(0, nnz, 1, [&](int64_t begin, int64_t end) {
    int64_t r = std::upper_bound(w.crow, w.crow + brows + 1, begin) - w.crow - 1;
    for (int64_t k = begin; k < end; ++k) {
      while (w.crow[r + 1] <= k) ++r;
      const T* dy = dyt + r * b * n;
      const T* x = xt + w.col[k] * b * n;
      T* out = dv + k * b * b;
      int64_t i = 0;
      for (; i + kRows <= b; i += kRows) {
        int64_t j = 0;
        for (; j + kCols <= b; j += kCols) grad_tile<T, kRows, kCols>(dy, x, n, b, out, i, j);
        for (; j < b; ++j) grad_tile<T, kRows, 1>(dy, x, n, b, out, i, j);
      }
      for (; i < b; ++i)
        for (int64_t j = 0; j < b; ++j) grad_tile<T, 1, 1>(dy, x, n, b, out, i, j);
    }
  });
}

}  // namespace

void forward(const View& w, const at::Tensor& values, const at::Tensor& x, const at::Tensor& bias,
             at::Tensor& y) {
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "sculpt::bsr_linear", [&] {
    forward_typed<scalar_t>(w, values.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                            bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr,
                            y.data_ptr<scalar_t>(), x.size(0));
  });
}

int64_t tile_columns(at::ScalarType dtype) {
  return dtype == at::kDouble ? tile_of<double>() : tile_of<float>();
}

void forward_tiles(const View& w, const at::Tensor& values, const at::Tensor& xt, at::Tensor& yt) {
  AT_DISPATCH_FLOATING_TYPES(xt.scalar_type(), "sculpt::bsr_linear", [&] {
    forward_tiles_typed<scalar_t>(w, values.const_data_ptr<scalar_t>(), xt.const_data_ptr<scalar_t>(),
                                  yt.data_ptr<scalar_t>(), xt.size(0));
  });
}

void block_grad(const View& w, const at::Tensor& dyt, const at::Tensor& xt, at::Tensor& dvalues) {
  AT_DISPATCH_FLOATING_TYPES(xt.scalar_type(), "sculpt::bsr_linear_backward", [&] {
    block_grad_typed<scalar_t>(w, dyt.const_data_ptr<scalar_t>(), xt.const_data_ptr<scalar_t>(),
                               xt.size(1), dvalues.data_ptr<scalar_t>(), dvalues.size(0));
  });
}

}  // namespace sculpt::kernels::bsr::SCULPT_CPU_NS
