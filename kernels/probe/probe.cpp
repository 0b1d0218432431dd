#include "kernels/probe/probe.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty_like.h>

#include <c10/util/Exception.h>

#include "kernels/cuda_entries.h"

namespace sculpt::kernels {

#ifdef SCULPT_WITH_CUDA
bool built_with_cuda() {
  return true;
}
#else
bool built_with_cuda() {
  return false;
}
#endif

namespace {
at::Tensor probe_axpy_cpu(const at::Tensor& x, const at::Tensor& y, double alpha) {
  auto xc = x.contiguous(), yc = y.contiguous();
  auto out = at::empty_like(yc);
  const float* px = xc.data_ptr<float>();
  const float* py = yc.data_ptr<float>();
  float* po = out.data_ptr<float>();
  const auto a = static_cast<float>(alpha);
  at::parallel_for(0, xc.numel(), 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) po[i] = py[i] + a * px[i];
  });
  return out;
}
}  // namespace

at::Tensor probe_axpy(const at::Tensor& x, const at::Tensor& y, double alpha) {
  TORCH_CHECK(x.sizes() == y.sizes(), "probe_axpy: shapes differ");
  TORCH_CHECK(x.scalar_type() == at::kFloat && y.scalar_type() == at::kFloat,
               "probe_axpy: float32 tensors expected");
  TORCH_CHECK(x.device() == y.device(), "probe_axpy: tensors on different devices");
  if (x.is_cuda()) {
#ifdef SCULPT_WITH_CUDA
    return loaded_cuda_entries("probe_axpy").probe_axpy(x, y, alpha);
#else
    TORCH_CHECK(false, "probe_axpy: Sculpt was built without CUDA kernels (SCULPT_CUDA=OFF)");
#endif
  }
  return probe_axpy_cpu(x, y, alpha);
}

}  // namespace sculpt::kernels
