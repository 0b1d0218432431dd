// Block-sparse Linear, the operator sculpt::bsr_linear (CPU and CUDA, with autograd):
//   y = x W^T + b,  W [out, in] stored as BSR: b x b blocks (b = 16, 32 or 64 on CUDA; any b
//   dividing both sides on CPU), crow [out/b + 1] (block-row offsets), col [nnz] (block columns,
//   ascending within a row), values [nnz, b, b] (the kept blocks, dense).
// Backward: dx = dy W through the transposed block structure, dW only for the kept blocks
// (dvalues[k] = dy[:, rows of k]^T x[:, cols of k]; sparse fine-tuning keeps the pattern), dbias.
// The dispatcher: above a crossover density (measured per device and block size, the table in
// bsr_gemm.cpp) a dense GEMM is faster; bsr_linear then scatters W and runs at::linear, and
// BsrLinear keeps W dense from the start.
// Python: torch.ops.load_library(<libsculpt_kernels.so>); torch.ops.sculpt.bsr_linear(x, crow,
// col, values, bias) and torch.ops.sculpt.bsr_from_dense(weight, block) -> (crow, col, values).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <tuple>

namespace sculpt::kernels {

struct BsrMatrix {
  int64_t rows = 0, cols = 0, block = 0;
  at::Tensor crow;    // int64 [rows/block + 1]
  at::Tensor col;     // int64 [nnz]
  at::Tensor values;  // [nnz, block, block]
  int64_t nnz() const { return col.defined() ? col.numel() : 0; }
  double density() const;  // kept blocks / all blocks
  int64_t bytes() const;    // values + indices
};

// The blocks of a dense [rows, cols] weight that hold a non-zero (on the weight's device and
// in its dtype). rows and cols must be multiples of block.
BsrMatrix bsr_from_dense(const at::Tensor& weight, int64_t block);
at::Tensor bsr_to_dense(const BsrMatrix& m);
// W^T as BSR (the block structure transposed, each block transposed).
BsrMatrix bsr_transpose(const BsrMatrix& m);

// The operator (autograd through x, m.values and bias).
at::Tensor bsr_linear(const at::Tensor& x, const BsrMatrix& m, const at::Tensor& bias);
// The kernels only, no dense fallback (benchmarks and tests of the sparse path).
at::Tensor bsr_linear_sparse(const at::Tensor& x, const BsrMatrix& m, const at::Tensor& bias);
// Plain ATen: x bsr_to_dense(m)^T + bias (the tests' oracle).
at::Tensor bsr_linear_ref(const at::Tensor& x, const BsrMatrix& m, const at::Tensor& bias);

// The block density above which dense GEMM beats the block-sparse kernels on this device type
// for this block size and dtype (the measured table in bsr_gemm.cpp).
double bsr_crossover_density(const at::Device& device, int64_t block, at::ScalarType dtype);

// A Linear layer's weight, block-sparse or dense as the dispatcher decides once, at
// construction (dense when the density is above the crossover): forward runs whichever is
// faster without converting per call.
class BsrLinear {
 public:
  BsrLinear(const at::Tensor& weight, const at::Tensor& bias, int64_t block);
  at::Tensor forward(const at::Tensor& x) const;
  bool sparse() const { return !dense_.defined(); }
  const BsrMatrix& matrix() const { return m_; }

 private:
  BsrMatrix m_;
  at::Tensor dense_, bias_;
};

}  // namespace sculpt::kernels
