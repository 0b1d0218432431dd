// Internal to kernels/fake_quant: the [outer, channels, inner] view every kernel works on and the
// per-device entry points (fake_quant.cpp checks arguments and calls these).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "kernels/cpu/capability.h"
#include "kernels/fake_quant/fake_quant.h"

namespace sculpt::kernels::fq {

// x (contiguous) seen as [outer, channels, inner]: channel c of element i is (i / inner) % channels.
// Per tensor: channels = 1. scale and zero point are [channels] in the compute dtype (float32,
// float64 for float64 x); the zero point is already rounded and clamped to [qmin, qmax] (as
// ATen's learnable ops do).
struct Layout {
  int64_t outer = 1, channels = 1, inner = 0;
  int64_t qmin = 0, qmax = 255;
};

// One copy per CPU instruction set (kernels/cpu/capability.h). forward:
// y = (clamp(nearbyint(x * (1/s)) + z, qmin, qmax) - z) * s in x's dtype (computed in float,
// double for double inputs); x, y contiguous. backward: dx = dy * [qmin <= q + z <= qmax]; when
// dscale is not null, adds the per-channel LSQ sums (before grad_factor) to dscale / dzp
// ([channels]): dy * (clamp(q) - x/s) inside the grid, dy * (qmin|qmax - z) outside; dy * -s
// for the zero point outside. Fixed-order sums (deterministic).
SCULPT_CPU_DECLARE(void, forward, (const at::Tensor& x, const at::Tensor& scale,
                                   const at::Tensor& zp, const Layout& l, at::Tensor& y))
SCULPT_CPU_DECLARE(void, backward, (const at::Tensor& dy, const at::Tensor& x,
                                    const at::Tensor& scale, const at::Tensor& zp, const Layout& l,
                                    at::Tensor& dx, double* dscale, double* dzp))

// fake_quant_rows (fake_quant.h) on float32 x, y of rows * inner elements: row r uses scale[r]
// and zp[r]; with derive, the row's range first and derive sets them (zp then written back
// rounded and clamped). Returns whether every grid value was inside [qmin, qmax].
SCULPT_CPU_DECLARE(bool, forward_rows, (const float* x, float* y, int64_t rows, int64_t inner,
                                        int64_t qmin, int64_t qmax, float* scale, float* zp,
                                        const RowQParams* derive))

#ifdef SCULPT_WITH_CUDA
// The same on the current CUDA stream; scale / zp on x's device; dscale / dzp: [channels] in
// the compute dtype, zeroed, or undefined (no LSQ sums).
void forward_cuda(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zp,
                  const Layout& l, at::Tensor& y);
void backward_cuda(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& scale,
                   const at::Tensor& zp, const Layout& l, at::Tensor& dx, at::Tensor& dscale,
                   at::Tensor& dzp);
#endif

}  // namespace sculpt::kernels::fq
