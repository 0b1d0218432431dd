// libsculpt_kernels_cuda.so: fills libsculpt_kernels' table of CUDA entry points when loaded.
#include "kernels/cuda_entries.h"

namespace sculpt::kernels {

at::Tensor probe_axpy_cuda(const at::Tensor& x, const at::Tensor& y, double alpha);

namespace {
const bool registered = [] {
  CudaEntries& t = cuda_entries();
  t.fq_forward = &fq::forward_cuda;
  t.fq_backward = &fq::backward_cuda;
  t.bsr_forward = &bsr::forward_cuda;
  t.probe_axpy = &probe_axpy_cuda;
  return true;
}();
}  // namespace

}  // namespace sculpt::kernels
