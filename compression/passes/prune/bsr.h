// Block-sparse (BSR) Linear on CPU: the runtime a block-pruned Linear layer exports to. The
// weight [out, in] is cut into b x b blocks; only the non-zero blocks are kept, row by block row
// (crow: block-row offsets, col: block-column index, values: [nnz, b, b]). The matrix type and the
// kernel are the kernels library's (sculpt::bsr_linear, kernels/bsr_gemm/).
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "core/nn/layers.h"
#include "kernels/bsr_gemm/bsr_gemm.h"

namespace sculpt::compression::prune {

using Bsr = kernels::BsrMatrix;

// The non-zero blocks of a dense [rows, cols] weight (rows and cols multiples of b), float32 on
// the CPU.
Bsr to_bsr(const at::Tensor& weight, int64_t block);
at::Tensor bsr_to_dense(const Bsr& m);
// x [..., cols] -> x W^T [..., rows] (+ bias when defined), in x's dtype. CPU.
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

// Hands `layer` (named `name` in the log) to the BSR kernel with `m` (its weight's blocks) when that
// pays: a CPU Linear whose block density is at most the kernel's crossover (any density when
// `force`). Logs, under `who`, whether it runs block-sparse or dense and why. Returns the
// runtime's description, or "" when the layer stays dense.
std::string install_bsr_runtime(nn::Compressible& layer, const std::string& name, Bsr m,
                                bool force, const std::string& who);

}  // namespace sculpt::compression::prune
