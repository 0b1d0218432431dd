// CUDA block-sparse Linear forward, y = x W^T + bias with W in BSR (blocks of B = 16, 32, 64).
// One CTA computes a tile of kTokens tokens x one block row (B output features) and walks the
// kept blocks of that row: each block's x slab [kTokens, B] and the block [B, B] are staged in
// shared memory, then
//   tensor cores (bf16 / fp16 in, fp32 accumulate): 4 warps, warp w owns tokens 16 w .. 16 w + 15
//     and all B / 16 feature fragments; wmma 16x16x16, W^T read as a column-major B operand
//     straight from the staged block (no transpose copy);
//   fp32 (CUDA cores): 256 threads, thread = one feature x B / 4 tokens, register accumulators.
// Staging loads are 16-byte vectors when the input row length and pointers allow it.
// The epilogue adds the bias and writes y in x's dtype (coalesced along the features).
// Backward uses the same kernel for dx (bsr_gemm.cpp passes W^T's BSR) and cuBLAS batched GEMM
// for the kept blocks of dW.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include "kernels/bsr_gemm/bsr_gemm_impl.h"

namespace sculpt::kernels::bsr {

namespace {

constexpr int kTokens = 64;

template <class T>
struct Native {
  using type = T;
};
template <>
struct Native<at::Half> {
  using type = __half;
};
template <>
struct Native<at::BFloat16> {
  using type = __nv_bfloat16;
};

__device__ inline float to_float(__half v) { return __half2float(v); }
__device__ inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <class T>
__device__ inline T from_float(float v);
template <>
__device__ inline float from_float<float>(float v) { return v; }
template <>
__device__ inline __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ inline __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Stage x[t0 .. t0 + kTokens, c B .. c B + B] into xs (row stride ld), zeros past n.
template <class T, int B>
__device__ inline void stage_x(const T* __restrict__ x, int64_t n, int64_t cols, int64_t t0,
                               int64_t c, T* xs, int ld, bool vec) {
  constexpr int kPer = 16 / sizeof(T);
  if (vec) {
    for (int idx = threadIdx.x; idx < kTokens * B / kPer; idx += blockDim.x) {
      const int t = idx / (B / kPer), j = (idx % (B / kPer)) * kPer;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (t0 + t < n) v = *reinterpret_cast<const uint4*>(x + (t0 + t) * cols + c * B + j);
      // xs rows are 16-byte aligned: ld * sizeof(T) is a multiple of 16.
      *reinterpret_cast<uint4*>(xs + t * ld + j) = v;
    }
  } else {
    for (int idx = threadIdx.x; idx < kTokens * B; idx += blockDim.x) {
      const int t = idx / B, j = idx % B;
      xs[t * ld + j] = t0 + t < n ? x[(t0 + t) * cols + c * B + j] : from_float<T>(0.0f);
    }
  }
}

template <class T, int B>
__device__ inline void stage_w(const T* __restrict__ v, T* ws, int ld) {
  constexpr int kPer = 16 / sizeof(T);
  for (int idx = threadIdx.x; idx < B * B / kPer; idx += blockDim.x) {
    const int i = idx / (B / kPer), j = (idx % (B / kPer)) * kPer;
    *reinterpret_cast<uint4*>(ws + i * ld + j) = *reinterpret_cast<const uint4*>(v + i * B + j);
  }
}

template <class T, int B>
__global__ void __launch_bounds__(128) bsr_tc_kernel(
    const T* __restrict__ x, const T* __restrict__ vals, const int64_t* __restrict__ crow,
    const int64_t* __restrict__ col, const T* __restrict__ bias, T* __restrict__ y, int64_t n,
    int64_t rows, int64_t cols, bool vec) {
  using namespace nvcuda;
  constexpr int kLd = B + 8;   // 16-bit elements: a multiple of 8, rows stay 16-byte aligned
  constexpr int kLdc = B + 4;  // floats
  constexpr int kFrags = B / 16;
  __shared__ __align__(32) T xs[kTokens * kLd];
  __shared__ __align__(32) T ws[B * kLd];
  __shared__ __align__(32) float cs[kTokens * kLdc];
  const int64_t t0 = int64_t(blockIdx.x) * kTokens, r = blockIdx.y;
  const int warp = threadIdx.x / 32;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kFrags];
#pragma unroll
  for (int f = 0; f < kFrags; ++f) wmma::fill_fragment(acc[f], 0.0f);
  for (int64_t k = crow[r]; k < crow[r + 1]; ++k) {
    stage_x<T, B>(x, n, cols, t0, col[k], xs, kLd, vec);
    stage_w<T, B>(vals + k * B * B, ws, kLd);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < B; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
      wmma::load_matrix_sync(a, xs + warp * 16 * kLd + kk, kLd);
#pragma unroll
      for (int f = 0; f < kFrags; ++f) {
        // B operand (k, n) = W[n][k]: column-major over the staged block rows.
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> bf;
        wmma::load_matrix_sync(bf, ws + f * 16 * kLd + kk, kLd);
        wmma::mma_sync(acc[f], a, bf, acc[f]);
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int f = 0; f < kFrags; ++f)
    wmma::store_matrix_sync(cs + warp * 16 * kLdc + f * 16, acc[f], kLdc, wmma::mem_row_major);
  __syncthreads();
  for (int idx = threadIdx.x; idx < kTokens * B; idx += blockDim.x) {
    const int t = idx / B, i = idx % B;
    if (t0 + t >= n) continue;
    float v = cs[t * kLdc + i];
    if (bias) v += to_float(bias[r * B + i]);
    y[(t0 + t) * rows + r * B + i] = from_float<T>(v);
  }
}

template <int B>
__global__ void __launch_bounds__(256) bsr_f32_kernel(
    const float* __restrict__ x, const float* __restrict__ vals, const int64_t* __restrict__ crow,
    const int64_t* __restrict__ col, const float* __restrict__ bias, float* __restrict__ y,
    int64_t n, int64_t rows, int64_t cols, bool vec) {
  constexpr int kLd = B + 4;
  constexpr int kGroups = 256 / B;         // token groups
  constexpr int kPer = kTokens / kGroups;  // tokens per thread
  __shared__ __align__(16) float xs[kTokens * kLd];
  __shared__ __align__(16) float ws[B * (B + 1)];
  const int64_t t0 = int64_t(blockIdx.x) * kTokens, r = blockIdx.y;
  const int i = threadIdx.x % B, g = threadIdx.x / B;
  float acc[kPer];
#pragma unroll
  for (int p = 0; p < kPer; ++p) acc[p] = 0.0f;
  for (int64_t k = crow[r]; k < crow[r + 1]; ++k) {
    stage_x<float, B>(x, n, cols, t0, col[k], xs, kLd, vec);
    for (int idx = threadIdx.x; idx < B * B; idx += blockDim.x)
      ws[(idx / B) * (B + 1) + idx % B] = vals[k * B * B + idx];
    __syncthreads();
#pragma unroll 8
    for (int j = 0; j < B; ++j) {
      const float w = ws[i * (B + 1) + j];
#pragma unroll
      for (int p = 0; p < kPer; ++p) acc[p] = fmaf(xs[(g + p * kGroups) * kLd + j], w, acc[p]);
    }
    __syncthreads();
  }
  const float b = bias ? bias[r * B + i] : 0.0f;
#pragma unroll
  for (int p = 0; p < kPer; ++p) {
    const int64_t t = t0 + g + p * kGroups;
    if (t < n) y[t * rows + r * B + i] = acc[p] + b;
  }
}

template <int B>
void launch(const View& w, const at::Tensor& values, const at::Tensor& x, const at::Tensor& bias,
            at::Tensor& y) {
  const int64_t n = x.size(0);
  const dim3 grid(static_cast<unsigned>((n + kTokens - 1) / kTokens),
                  static_cast<unsigned>(w.rows / B));
  auto stream = at::cuda::getCurrentCUDAStream();
  const at::Tensor b = bias.defined() ? bias.to(x.scalar_type()).contiguous() : bias;
  const bool vec = w.cols % 8 == 0 && reinterpret_cast<uintptr_t>(x.const_data_ptr()) % 16 == 0;
  if (x.scalar_type() == at::kFloat) {
    bsr_f32_kernel<B><<<grid, 256, 0, stream>>>(
        x.const_data_ptr<float>(), values.const_data_ptr<float>(), w.crow, w.col,
        b.defined() ? b.const_data_ptr<float>() : nullptr, y.data_ptr<float>(), n, w.rows, w.cols,
        vec && w.cols % 4 == 0);
  } else if (x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16) {
    AT_DISPATCH_REDUCED_FLOATING_TYPES(x.scalar_type(), "sculpt::bsr_linear_cuda", [&] {
      using T = typename Native<scalar_t>::type;
      bsr_tc_kernel<T, B><<<grid, 128, 0, stream>>>(
          reinterpret_cast<const T*>(x.const_data_ptr<scalar_t>()),
          reinterpret_cast<const T*>(values.const_data_ptr<scalar_t>()), w.crow, w.col,
          b.defined() ? reinterpret_cast<const T*>(b.const_data_ptr<scalar_t>()) : nullptr,
          reinterpret_cast<T*>(y.data_ptr<scalar_t>()), n, w.rows, w.cols, vec);
    });
  } else {
    TORCH_CHECK(false, "sculpt::bsr_linear: CUDA supports float32, bfloat16 and float16, got ",
                x.scalar_type());
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

void forward_cuda(const View& w, const at::Tensor& values, const at::Tensor& x,
                  const at::Tensor& bias, at::Tensor& y) {
  c10::cuda::CUDAGuard guard(x.device());
  TORCH_CHECK(w.rows / w.block <= 65535, "sculpt::bsr_linear: more than 65535 block rows");
  TORCH_CHECK(reinterpret_cast<uintptr_t>(values.const_data_ptr()) % 16 == 0,
              "sculpt::bsr_linear: values must be 16-byte aligned on CUDA");
  switch (w.block) {
    case 16: return launch<16>(w, values, x, bias, y);
    case 32: return launch<32>(w, values, x, bias, y);
    case 64: return launch<64>(w, values, x, bias, y);
    default:
      TORCH_CHECK(false, "sculpt::bsr_linear: CUDA kernels take blocks of 16, 32 or 64, got ",
                  w.block);
  }
}

}  // namespace sculpt::kernels::bsr
