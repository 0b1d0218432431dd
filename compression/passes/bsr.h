// Block-sparse (BSR) Linear on CPU: the runtime a block-pruned Linear layer exports to. The
// weight [out, in] is cut into b x b blocks; only the non-zero blocks are kept, row by block row
// (crow: block-row offsets, col: block-column index, values: [nnz, b, b]). y = x W^T + bias is
// computed as y^T, block by block, with contiguous axpys over the batch. A straightforward
// kernel (the tuned block-sparse GEMM is the kernels issue, 11).
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "core/nn/layers.h"

namespace sculpt::compression::prune {

struct Bsr {
  int64_t rows = 0, cols = 0, block = 0;
  at::Tensor crow;    // long [rows/b + 1]
  at::Tensor col;     // long [nnz]
  at::Tensor values;  // float [nnz, b, b]
  double density() const;
  int64_t bytes() const;
};

// The non-zero blocks of a dense [rows, cols] weight (rows and cols multiples of b).
Bsr to_bsr(const at::Tensor& weight, int64_t block);
at::Tensor bsr_to_dense(const Bsr& m);
// x [..., cols] -> x W^T [..., rows] (+ bias when defined). CPU, float.
at::Tensor bsr_linear(const at::Tensor& x, const Bsr& m, const at::Tensor& bias);

class BsrLinearRuntime final : public nn::LayerRuntime {
 public:
  BsrLinearRuntime(Bsr m, at::Tensor bias);
  at::Tensor forward(const at::Tensor& input) override;
  std::string describe() const override;
  const Bsr& matrix() const { return m_; }

 private:
  Bsr m_;
  at::Tensor bias_;
};

}  // namespace sculpt::compression::prune
