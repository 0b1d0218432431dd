// Plain ATen block-sparse Linear: the oracle of the tests. The dense weight is rebuilt block by
// block with a loop (no shared code with the kernels' scatter), then torch's own linear.
#include <ATen/ATen.h>

#include "kernels/bsr_gemm/bsr_gemm.h"

namespace sculpt::kernels {

at::Tensor bsr_linear_ref(const at::Tensor& x, const BsrMatrix& m, const at::Tensor& bias) {
  at::Tensor w = at::zeros({m.rows, m.cols}, m.values.options());
  const at::Tensor crow = m.crow.cpu(), col = m.col.cpu();
  const int64_t b = m.block;
  for (int64_t r = 0; r + 1 < crow.numel(); ++r)
    for (int64_t k = crow[r].item<int64_t>(); k < crow[r + 1].item<int64_t>(); ++k)
      w.slice(0, r * b, r * b + b).slice(1, col[k].item<int64_t>() * b, col[k].item<int64_t>() * b + b)
          .copy_(m.values[k]);
  return at::linear(x, w, bias);
}

}  // namespace sculpt::kernels
