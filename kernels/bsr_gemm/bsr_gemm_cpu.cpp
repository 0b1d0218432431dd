// CPU block-sparse GEMM (at::vec, at::parallel_for), compiled once per instruction set
// (kernels/cpu/capability.h); SCULPT_CPU_NS names the copy.
//
// forward   y^T = W x^T over tiles of T batch columns (T = kVecs vectors): for every kept block
//           (r, c) and every group of kRows output rows, kRows x kVecs accumulators take the
//           block's b input rows (x^T rows c b .. c b + b - 1 of the tile) one after another:
//           per input row kVecs loads and kRows broadcasts feed kRows * kVecs FMAs. The block's
//           x rows (b * T floats) and y rows stay in L1 while its row groups run. Parallel over
//           (tile, block row) pairs; each writes its own y rows.
// block_grad  dW_k = dY_r^T X_c for the kept blocks only: kRows x kCols dot products of length
//           n at a time (kRows + kCols loads per kRows * kCols FMAs); parallel over blocks.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>

#include "kernels/bsr_gemm/bsr_gemm_impl.h"

#ifndef SCULPT_CPU_NS
#define SCULPT_CPU_NS cpu_default
#endif

namespace sculpt::kernels::bsr::SCULPT_CPU_NS {

namespace {

using at::vec::Vectorized;
constexpr int64_t kRows = 4;  // output rows per register block
constexpr int64_t kCols = 4;  // block_grad: input columns per register block

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
void forward_typed(const View& w, const T* vals, const T* xt, T* yt, int64_t tiles) {
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

int64_t tile_columns(at::ScalarType dtype) {
  return dtype == at::kDouble ? tile_of<double>() : tile_of<float>();
}

void forward(const View& w, const at::Tensor& values, const at::Tensor& xt, at::Tensor& yt) {
  AT_DISPATCH_FLOATING_TYPES(xt.scalar_type(), "sculpt::bsr_linear", [&] {
    forward_typed<scalar_t>(w, values.const_data_ptr<scalar_t>(), xt.const_data_ptr<scalar_t>(),
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
