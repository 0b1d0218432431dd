// CUDA side of the toolchain probe: one grid-stride loop, launched on the current stream.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <ATen/ops/empty_like.h>

#include "kernels/probe/probe.h"

namespace sculpt::kernels {

namespace {
__global__ void axpy_kernel(const float* __restrict__ x, const float* __restrict__ y, float* out,
                            float alpha, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(blockDim.x) * gridDim.x)
    out[i] = y[i] + alpha * x[i];
}
}  // namespace

at::Tensor probe_axpy_cuda(const at::Tensor& x, const at::Tensor& y, double alpha) {
  c10::cuda::CUDAGuard guard(x.device());
  auto xc = x.contiguous(), yc = y.contiguous();
  auto out = at::empty_like(yc);
  const int64_t n = xc.numel();
  if (n == 0) return out;
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, 65535));
  axpy_kernel<<<blocks, threads, 0, at::cuda::getCurrentCUDAStream()>>>(
      xc.data_ptr<float>(), yc.data_ptr<float>(), out.data_ptr<float>(), static_cast<float>(alpha),
      n);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace sculpt::kernels
