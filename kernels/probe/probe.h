// Toolchain probe: y + alpha * x, on CPU or CUDA. It exists to prove, in CI and on a GPU machine,
// that our own CUDA code builds for sm_90 (+PTX), links against LibTorch and runs; the real
// kernels (fake-quant, block-sparse GEMM) follow the same layout (STYLE.md habit 6).
#pragma once

#include <ATen/core/Tensor.h>

namespace sculpt::kernels {

// Float tensors of equal shape on one device; returns a new tensor.
at::Tensor probe_axpy(const at::Tensor& x, const at::Tensor& y, double alpha);
bool built_with_cuda();

}  // namespace sculpt::kernels
