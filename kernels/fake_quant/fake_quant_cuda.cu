// CUDA fake quantization: one pass forward, one pass backward (dx and the LSQ sums together).
// Variants (chosen per call):
//   vectorized   16-byte loads and stores (4 fp32, 8 bf16/fp16, 2 fp64 per access) in a
//                grid-stride loop, when x, y (dy, dx) are 16-byte aligned and every vector lies
//                in one channel (per tensor, or inner % vector width == 0);
//   scalar       the same loop one element at a time otherwise.
// Backward with LSQ sums:
//   rows         inner > 1: one CTA per (row, segment of kSegment elements); warp shuffles then
//                shared memory reduce the CTA's partial, written to partials[item]; the partials
//                are summed per channel by one small ATen reduction (fixed order: deterministic,
//                no atomics, no host sync);
//   channels-last inner == 1: thread = channel, CTAs along y split the rows; partials [splits, C].
// Arithmetic as the CPU kernels (fake_quant_cpu.cpp): float (double for fp64), x * (1/s),
// rintf (half to even), clamp(q, qmin - z, qmax - z) * s.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <ATen/ops/empty.h>
#include <ATen/ops/sum.h>

#include <type_traits>

#include "kernels/fake_quant/fake_quant_impl.h"

namespace sculpt::kernels::fq {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kSegment = 8192;
constexpr int kSplitRows = 64;  // rows per CTA (y) in the channels-last LSQ kernel

template <class T>
using compute_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <class T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

__device__ inline float round_even(float v) { return rintf(v); }
__device__ inline double round_even(double v) { return rint(v); }

template <class C>
struct Channel {
  C s, inv, lo, hi;
  __device__ Channel(const C* scale, const C* zp, int64_t c, int64_t qmin, int64_t qmax) {
    s = static_cast<C>(scale[c]);
    inv = C(1) / s;
    lo = static_cast<C>(qmin) - static_cast<C>(zp[c]);
    hi = static_cast<C>(qmax) - static_cast<C>(zp[c]);
  }
};

template <class T, int N>
__global__ void forward_kernel(const T* __restrict__ x, T* __restrict__ y, const compute_t<T>* scale,
                               const compute_t<T>* zp, int64_t n, int64_t inner, int64_t channels,
                               int64_t qmin, int64_t qmax) {
  using C = compute_t<T>;
  const int64_t packs = n / N;
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < packs;
       p += int64_t(blockDim.x) * gridDim.x) {
    const Channel<C> ch(scale, zp, (p * N / inner) % channels, qmin, qmax);
    Pack<T, N> in = reinterpret_cast<const Pack<T, N>*>(x)[p], out;
#pragma unroll
    for (int k = 0; k < N; ++k) {
      const C q = round_even(static_cast<C>(in.v[k]) * ch.inv);
      out.v[k] = static_cast<T>(fmin(fmax(q, ch.lo), ch.hi) * ch.s);
    }
    reinterpret_cast<Pack<T, N>*>(y)[p] = out;
  }
}

// dx for one element; adds the LSQ terms when lsq.
template <class C>
__device__ inline C backward_one(C x, C dy, const Channel<C>& ch, C& ds, C& dz, bool lsq) {
  const C t = x * ch.inv;
  const C q = round_even(t);
  const bool inside = q >= ch.lo && q <= ch.hi;
  if (lsq) {
    ds += dy * (fmin(fmax(q, ch.lo), ch.hi) - (inside ? t : C(0)));
    dz -= inside ? C(0) : dy * ch.s;
  }
  return inside ? dy : C(0);
}

// STE only: a grid-stride elementwise pass.
template <class T, int N>
__global__ void backward_ste_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                    T* __restrict__ dx, const compute_t<T>* scale, const compute_t<T>* zp,
                                    int64_t n, int64_t inner, int64_t channels, int64_t qmin,
                                    int64_t qmax) {
  using C = compute_t<T>;
  const int64_t packs = n / N;
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < packs;
       p += int64_t(blockDim.x) * gridDim.x) {
    const Channel<C> ch(scale, zp, (p * N / inner) % channels, qmin, qmax);
    const Pack<T, N> xv = reinterpret_cast<const Pack<T, N>*>(x)[p];
    const Pack<T, N> gv = reinterpret_cast<const Pack<T, N>*>(dy)[p];
    Pack<T, N> out;
    C ds = 0, dz = 0;
#pragma unroll
    for (int k = 0; k < N; ++k)
      out.v[k] = static_cast<T>(backward_one<C>(static_cast<C>(xv.v[k]), static_cast<C>(gv.v[k]),
                                                ch, ds, dz, false));
    reinterpret_cast<Pack<T, N>*>(dx)[p] = out;
  }
}

template <class C>
__device__ inline C warp_sum(C v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the CTA; the result is valid in thread 0.
template <class C>
__device__ inline C block_sum(C v, C* shared) {
  v = warp_sum(v);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = threadIdx.x < blockDim.x / 32 ? shared[threadIdx.x] : C(0);
  if (warp == 0) v = warp_sum(v);
  __syncthreads();
  return v;
}

// One CTA per (row, segment): dx and the segment's LSQ partials.
template <class T, int N>
__global__ void backward_rows_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                     T* __restrict__ dx, const compute_t<T>* scale, const compute_t<T>* zp,
                                     int64_t inner, int64_t channels, int64_t segs, int64_t qmin,
                                     int64_t qmax, compute_t<T>* partial_s, compute_t<T>* partial_z) {
  using C = compute_t<T>;
  __shared__ C shared[kThreads / 32];
  const int64_t item = blockIdx.x, row = item / segs, seg = item % segs;
  const Channel<C> ch(scale, zp, row % channels, qmin, qmax);
  const int64_t begin = row * inner + seg * kSegment;
  const int64_t len = min(kSegment, inner - seg * kSegment);
  C ds = 0, dz = 0;
  const bool packed = N > 1 && begin % N == 0 && len % N == 0;
  if (packed) {
    const auto* xp = reinterpret_cast<const Pack<T, N>*>(x + begin);
    const auto* gp = reinterpret_cast<const Pack<T, N>*>(dy + begin);
    auto* dp = reinterpret_cast<Pack<T, N>*>(dx + begin);
    for (int64_t p = threadIdx.x; p < len / N; p += blockDim.x) {
      const Pack<T, N> xv = xp[p], gv = gp[p];
      Pack<T, N> out;
#pragma unroll
      for (int k = 0; k < N; ++k)
        out.v[k] = static_cast<T>(backward_one<C>(static_cast<C>(xv.v[k]),
                                                  static_cast<C>(gv.v[k]), ch, ds, dz, true));
      dp[p] = out;
    }
  } else {
    for (int64_t i = threadIdx.x; i < len; i += blockDim.x)
      dx[begin + i] = static_cast<T>(backward_one<C>(static_cast<C>(x[begin + i]),
                                                     static_cast<C>(dy[begin + i]), ch, ds, dz, true));
  }
  ds = block_sum(ds, shared);
  dz = block_sum(dz, shared);
  if (threadIdx.x == 0) {
    partial_s[item] = ds;
    partial_z[item] = dz;
  }
}

// Channels last (inner == 1): thread = channel (coalesced along the row), CTA row y = a split of
// kSplitRows rows; partials [splits, channels].
template <class T>
__global__ void backward_channels_last_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                              T* __restrict__ dx, const compute_t<T>* scale,
                                              const compute_t<T>* zp, int64_t outer, int64_t channels,
                                              int64_t qmin, int64_t qmax, compute_t<T>* partial_s,
                                              compute_t<T>* partial_z) {
  using C = compute_t<T>;
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= channels) return;
  const Channel<C> ch(scale, zp, c, qmin, qmax);
  C ds = 0, dz = 0;
  const int64_t r0 = int64_t(blockIdx.y) * kSplitRows, r1 = min(outer, r0 + kSplitRows);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t i = r * channels + c;
    dx[i] = static_cast<T>(backward_one<C>(static_cast<C>(x[i]), static_cast<C>(dy[i]), ch, ds, dz, true));
  }
  partial_s[blockIdx.y * channels + c] = ds;
  partial_z[blockIdx.y * channels + c] = dz;
}

int grid_for(int64_t work) {
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((work + kThreads - 1) / kThreads, sms * 8)));
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// The vector width usable for this call (16 bytes / element size, or 1).
template <class T>
constexpr int kPack = 16 / sizeof(T);

template <class T>
bool can_pack(const Layout& l, std::initializer_list<const void*> ptrs) {
  if (l.channels > 1 && l.inner % kPack<T> != 0) return false;
  for (const void* p : ptrs)
    if (!aligned16(p)) return false;
  return true;
}

}  // namespace

void forward_cuda(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zp,
                  const Layout& l, at::Tensor& y) {
  c10::cuda::CUDAGuard guard(x.device());
  auto stream = at::cuda::getCurrentCUDAStream();
  const int64_t n = x.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sculpt::fake_quant_cuda", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.data_ptr<scalar_t>();
    using C = compute_t<scalar_t>;
    const C *sp = scale.const_data_ptr<C>(), *zpp = zp.const_data_ptr<C>();
    constexpr int N = kPack<scalar_t>;
    int64_t done = 0;
    if (can_pack<scalar_t>(l, {xp, yp})) {
      forward_kernel<scalar_t, N><<<grid_for(n / N), kThreads, 0, stream>>>(
          xp, yp, sp, zpp, n, l.inner, l.channels, l.qmin, l.qmax);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      done = n / N * N;
    }
    if (done < n) {  // the tail (per tensor) or everything (unaligned / mixed vectors)
      forward_kernel<scalar_t, 1><<<grid_for(n - done), kThreads, 0, stream>>>(
          xp + done, yp + done, sp, zpp, n - done, l.channels > 1 ? l.inner : n, l.channels,
          l.qmin, l.qmax);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
}

void backward_cuda(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& scale,
                   const at::Tensor& zp, const Layout& l, at::Tensor& dx, at::Tensor& dscale,
                   at::Tensor& dzp) {
  c10::cuda::CUDAGuard guard(x.device());
  auto stream = at::cuda::getCurrentCUDAStream();
  const int64_t n = x.numel();
  const bool lsq = dscale.defined();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sculpt::fake_quant_backward_cuda", [&] {
    const scalar_t *xp = x.const_data_ptr<scalar_t>(), *gp = dy.const_data_ptr<scalar_t>();
    scalar_t* dp = dx.data_ptr<scalar_t>();
    using C = compute_t<scalar_t>;
    const C *sp = scale.const_data_ptr<C>(), *zpp = zp.const_data_ptr<C>();
    constexpr int N = kPack<scalar_t>;
    const bool pack = can_pack<scalar_t>(l, {xp, gp, dp});
    if (!lsq) {
      int64_t done = 0;
      if (pack) {
        backward_ste_kernel<scalar_t, N><<<grid_for(n / N), kThreads, 0, stream>>>(
            gp, xp, dp, sp, zpp, n, l.inner, l.channels, l.qmin, l.qmax);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        done = n / N * N;
      }
      if (done < n) {
        backward_ste_kernel<scalar_t, 1><<<grid_for(n - done), kThreads, 0, stream>>>(
            gp + done, xp + done, dp + done, sp, zpp, n - done, l.channels > 1 ? l.inner : n,
            l.channels, l.qmin, l.qmax);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      return;
    }
    const auto fopt = x.options().dtype(c10::CppTypeToScalarType<C>::value);
    if (l.inner == 1 && l.channels > 1) {
      const int64_t splits = (l.outer + kSplitRows - 1) / kSplitRows;
      TORCH_CHECK(splits < 65536, "sculpt::fake_quant_backward: too many rows for the channels-last kernel");
      at::Tensor ps = at::empty({splits, l.channels}, fopt), pz = at::empty({splits, l.channels}, fopt);
      const dim3 grid(static_cast<unsigned>((l.channels + kThreads - 1) / kThreads), static_cast<unsigned>(splits));
      backward_channels_last_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(
          gp, xp, dp, sp, zpp, l.outer, l.channels, l.qmin, l.qmax, ps.data_ptr<C>(),
          pz.data_ptr<C>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      dscale.copy_(ps.sum(0));
      dzp.copy_(pz.sum(0));
      return;
    }
    const int64_t segs = (l.inner + kSegment - 1) / kSegment, items = l.outer * l.channels * segs;
    TORCH_CHECK(items < (int64_t{1} << 31), "sculpt::fake_quant_backward: tensor too large");
    at::Tensor ps = at::empty({items}, fopt), pz = at::empty({items}, fopt);
    const bool packed = aligned16(xp) && aligned16(gp) && aligned16(dp);  // per segment below
    if (packed)
      backward_rows_kernel<scalar_t, N><<<static_cast<unsigned>(items), kThreads, 0, stream>>>(
          gp, xp, dp, sp, zpp, l.inner, l.channels, segs, l.qmin, l.qmax, ps.data_ptr<C>(),
          pz.data_ptr<C>());
    else
      backward_rows_kernel<scalar_t, 1><<<static_cast<unsigned>(items), kThreads, 0, stream>>>(
          gp, xp, dp, sp, zpp, l.inner, l.channels, segs, l.qmin, l.qmax, ps.data_ptr<C>(),
          pz.data_ptr<C>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    dscale.copy_(ps.view({l.outer, l.channels, segs}).sum(at::IntArrayRef{0, 2}));
    dzp.copy_(pz.view({l.outer, l.channels, segs}).sum(at::IntArrayRef{0, 2}));
  });
}

}  // namespace sculpt::kernels::fq
