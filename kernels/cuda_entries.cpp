#include "kernels/cuda_entries.h"

#include <c10/util/Exception.h>

namespace sculpt::kernels {

CudaEntries& cuda_entries() {
  static CudaEntries table;
  return table;
}

const CudaEntries& loaded_cuda_entries(const char* op) {
  const CudaEntries& t = cuda_entries();
  TORCH_CHECK(t.fq_forward != nullptr, op, ": a CUDA tensor, but Sculpt's CUDA kernels "
              "(libsculpt_kernels_cuda.so) are not loaded; call sculpt::load_cuda_runtime() "
              "first, or from Python torch.ops.load_library() that library too");
  return t;
}

}  // namespace sculpt::kernels
