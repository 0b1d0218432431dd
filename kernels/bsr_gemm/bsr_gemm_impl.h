// Internal to kernels/bsr_gemm: the per-device kernels behind sculpt::bsr_linear (bsr_gemm.cpp
// checks arguments, converts layouts and calls these).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "kernels/cpu/capability.h"

namespace sculpt::kernels::bsr {

// A block-sparse [rows, cols] matrix of b x b blocks: crow int64 [rows/b + 1], col int64 [nnz],
// values [nnz, b, b] (contiguous, the kernel's dtype).
struct View {
  const int64_t* crow;
  const int64_t* col;
  int64_t rows, cols, block;
};

// forward: y [n, rows] = x [n, cols] W^T + bias (bias undefined: none); x, values, bias, y
// contiguous, one dtype: float or double.
SCULPT_CPU_DECLARE(void, forward, (const View& w, const at::Tensor& values, const at::Tensor& x,
                                   const at::Tensor& bias, at::Tensor& y))
// The tiles variant for small blocks: the batch transposed and cut into tiles of tile_columns()
// columns, xt [tiles, cols, T]; yt [tiles, rows, T] (holding the bias or zeros) += W xt.
SCULPT_CPU_DECLARE(int64_t, tile_columns, (at::ScalarType dtype))
SCULPT_CPU_DECLARE(void, forward_tiles, (const View& w, const at::Tensor& values,
                                         const at::Tensor& xt, at::Tensor& yt))
// The gradient of the kept blocks: dvalues[k] = dyt[r b.., :] xt[c b.., :]^T, with dyt [rows, n]
// and xt [cols, n] (n = batch, contiguous rows). float / double.
SCULPT_CPU_DECLARE(void, block_grad, (const View& w, const at::Tensor& dyt, const at::Tensor& xt,
                                      at::Tensor& dvalues))

#ifdef SCULPT_WITH_CUDA
// y [n, rows] = x [n, cols] W^T (+ bias), on the current stream. x, values: float32 (CUDA cores)
// or bfloat16 / float16 (tensor cores, float accumulation); block 16, 32 or 64.
void forward_cuda(const View& w, const at::Tensor& values, const at::Tensor& x,
                  const at::Tensor& bias, at::Tensor& y);
#endif

}  // namespace sculpt::kernels::bsr
