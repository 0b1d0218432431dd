// The CUDA entry points of Sculpt's kernels. The CUDA code lives in libsculpt_kernels_cuda.so,
// which links LibTorch's CUDA library and fills this table when it is loaded
// (sculpt::load_cuda_runtime() loads it on a machine with an NVIDIA driver; the CUDA tests and
// benchmarks link it). libsculpt_kernels holds the table and its ops call through it, so a CPU
// process never loads CUDA's ~450 MB of libraries.
#pragma once

#include "kernels/bsr_gemm/bsr_gemm_impl.h"
#include "kernels/fake_quant/fake_quant_impl.h"

namespace sculpt::kernels {

struct CudaEntries {
  void (*fq_forward)(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zp,
                     const fq::Layout& l, at::Tensor& y) = nullptr;
  void (*fq_backward)(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& scale,
                      const at::Tensor& zp, const fq::Layout& l, at::Tensor& dx,
                      at::Tensor& dscale, at::Tensor& dzp) = nullptr;
  void (*bsr_forward)(const bsr::View& w, const at::Tensor& values, const at::Tensor& x,
                      const at::Tensor& bias, at::Tensor& y) = nullptr;
  at::Tensor (*probe_axpy)(const at::Tensor& x, const at::Tensor& y, double alpha) = nullptr;
};

CudaEntries& cuda_entries();
// The table, once libsculpt_kernels_cuda.so has filled it; otherwise an error naming `op`.
const CudaEntries& loaded_cuda_entries(const char* op);

}  // namespace sculpt::kernels
