// The kernels of issue 11 against the best PyTorch equivalent, in one process:
//   fq             fake quantization forward+backward (autograd), per channel and per tensor,
//                  STE and LSQ, vs ATen's fake_quantize_per_channel_affine /
//                  _fake_quantize_learnable_per_channel_affine (the kernels torch.* calls);
//   bsr            block-sparse Linear forward vs dense torch::linear and torch's BSR matmul
//                  (to_sparse_bsr + matmul), through the dispatcher (BsrLinear) and the sparse
//                  kernel alone;
//   bsr-crossover  the block density where dense becomes faster (the dispatcher's table).
// Medians of alternating timings. After its own tables (fq, bsr, all) it runs the Python side,
// bench/kernels_torch.py, with the venv's Python (or --python P; --python none skips it): the
// same operators through torch.ops against PyTorch's ops timed from Python. Usage:
//   build/bin/bench_kernels [fq|bsr|bsr-crossover|all] [--device cpu|cuda] [--threads N] [--python P]
// CPU defaults: 4M-element fake-quant, 2048x2048 weight / batch 256 / 32x32 blocks.
// CUDA: 2^26-element fake-quant (bandwidth vs a device copy), 4096x4096 bf16 weight, 8192 tokens.
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <cmath>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "kernels/bsr_gemm/bsr_gemm.h"
#include "kernels/cpu/capability.h"
#include "kernels/fake_quant/fake_quant.h"

namespace k = sculpt::kernels;

namespace {

bool g_cuda = false;

void sync() {
  if (g_cuda) torch::cuda::synchronize();
}

// The clock: on the CPU the process's CPU time (all its threads), which time slices taken by
// other processes on a loaded machine do not inflate; on CUDA wall time after a synchronize.
double now_us() {
  if (!g_cuda) {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) * 1e-3;
  }
  return std::chrono::duration<double, std::micro>(
             std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Median microseconds per call of f and g, timed alternately in rounds.
std::pair<double, double> compare_us(const std::function<void()>& f, const std::function<void()>& g,
                                     int iters, int rounds = 9) {
  auto once = [&](const std::function<void()>& h) {
    sync();
    const double t0 = now_us();
    for (int i = 0; i < iters; ++i) h();
    sync();
    return (now_us() - t0) / iters;
  };
  once(f), once(g);  // warm up
  std::vector<double> tf, tg;
  for (int r = 0; r < rounds; ++r) tf.push_back(once(f)), tg.push_back(once(g));
  std::sort(tf.begin(), tf.end());
  std::sort(tg.begin(), tg.end());
  return {tf[tf.size() / 2], tg[tg.size() / 2]};
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

at::TensorOptions opts(at::ScalarType t = at::kFloat) {
  return at::TensorOptions().dtype(t).device(g_cuda ? at::kCUDA : at::kCPU);
}

void bench_fq() {
  const int64_t n = g_cuda ? (int64_t{1} << 26) : (int64_t{1} << 22);
  const int64_t channels = 256;
  const int iters = g_cuda ? 20 : 10;
  std::printf("\n### Fake quantization forward+backward, %lld elements [%lld, %lld], int8 asym\n\n",
              static_cast<long long>(n), static_cast<long long>(channels),
              static_cast<long long>(n / channels));
  std::printf("| case | dtype | ATen (us) | sculpt (us) | speed-up |%s\n|---|---|---|---|---|%s\n",
              g_cuda ? " sculpt GB/s | % of copy |" : "", g_cuda ? "---|---|" : "");
  double copy_gbs = 0;
  if (g_cuda) {  // device-to-device copy bandwidth, bytes read + written
    auto a = torch::randn({n}, opts()), b = torch::empty_like(a);
    auto [us, us2] = compare_us([&] { b.copy_(a); }, [&] { a.copy_(b); }, iters);
    copy_gbs = 2.0 * 4.0 * static_cast<double>(n) / (std::min(us, us2) * 1e3);
    std::printf("| device copy fp32 | | %.1f | | | %.0f | 100 |\n", us, copy_gbs);
  }
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    if (dtype != at::kFloat && !g_cuda) continue;  // ATen's CPU fake-quant is fp32 only
    const auto x0 = torch::randn({channels, n / channels}, opts()).mul_(3.0).to(dtype);
    const auto gy = torch::randn_like(x0);
    const auto scale = (torch::rand({channels}, opts()) * 0.05 + 0.02);
    const auto zpf = torch::randint(0, 256, {channels}, opts());
    const auto zpi = zpf.to(at::kInt);
    const double g = 1.0 / std::sqrt(static_cast<double>(n / channels) * 255.0);
    const auto x = x0.clone().requires_grad_(true);
    auto aten_ste = [&] {
      auto y = at::fake_quantize_per_channel_affine(x, scale, zpi, 0, 0, 255);
      y.backward(gy);
      x.mutable_grad().reset();
    };
    auto ours_ste = [&] {
      auto y = k::fake_quant(x, scale, zpf, 0, 0, 255);
      y.backward(gy);
      x.mutable_grad().reset();
    };
    const double bytes_ste = static_cast<double>(n) * x0.element_size() * 5;  // x->y; x,dy->dx
    auto [a1, s1] = compare_us(aten_ste, ours_ste, iters);
    if (g_cuda)
      std::printf("| per-channel STE | %s | %.1f | %.1f | %.2fx | %.0f | %.0f |\n", c10::toString(dtype),
                  a1, s1, a1 / s1, bytes_ste / (s1 * 1e3), 100 * bytes_ste / (s1 * 1e3) / copy_gbs);
    else
      std::printf("| per-channel STE | %s | %.1f | %.1f | %.2fx |\n", c10::toString(dtype), a1, s1, a1 / s1);
    if (dtype != at::kFloat) continue;  // ATen's learnable ops are fp32 only
    const auto s = scale.clone().requires_grad_(true), z = zpf.clone().requires_grad_(true);
    auto aten_lsq = [&] {
      auto y = at::_fake_quantize_learnable_per_channel_affine(x, s, z, 0, 0, 255, g);
      y.backward(gy);
      x.mutable_grad().reset(), s.mutable_grad().reset(), z.mutable_grad().reset();
    };
    auto ours_lsq = [&] {
      auto y = k::fake_quant(x, s, z, 0, 0, 255, g);
      y.backward(gy);
      x.mutable_grad().reset(), s.mutable_grad().reset(), z.mutable_grad().reset();
    };
    auto [a2, s2] = compare_us(aten_lsq, ours_lsq, iters);
    std::printf("| per-channel LSQ (learned s, z) | %s | %.1f | %.1f | %.2fx |%s\n", c10::toString(dtype),
                a2, s2, a2 / s2, g_cuda ? " | |" : "");
    const auto st = torch::full({1}, 0.05, opts()), zt = torch::full({1}, 128.0, opts());
    auto aten_pt = [&] {
      auto y = at::fake_quantize_per_tensor_affine(x, 0.05, 128, 0, 255);
      y.backward(gy);
      x.mutable_grad().reset();
    };
    auto ours_pt = [&] {
      auto y = k::fake_quant(x, st, zt, std::nullopt, 0, 255);
      y.backward(gy);
      x.mutable_grad().reset();
    };
    auto [a3, s3] = compare_us(aten_pt, ours_pt, iters);
    std::printf("| per-tensor STE | %s | %.1f | %.1f | %.2fx |%s\n", c10::toString(dtype), a3, s3,
                a3 / s3, g_cuda ? " | |" : "");
  }
}

at::Tensor block_weight(int64_t rows, int64_t cols, int64_t b, double density, at::ScalarType t) {
  auto keep = torch::rand({rows / b, cols / b}) < density;
  auto mask = keep.repeat_interleave(b, 0).repeat_interleave(b, 1);
  return (torch::randn({rows, cols}) * 0.05 * mask).to(opts(t));
}

void bench_bsr(bool crossover) {
  const int64_t out = g_cuda ? 4096 : 2048, in = out, batch = g_cuda ? 8192 : 256;
  const auto dtype = g_cuda ? at::kBFloat16 : at::kFloat;
  const int iters = g_cuda ? 20 : 5;
  std::vector<int64_t> blocks = g_cuda ? std::vector<int64_t>{32, 64} : std::vector<int64_t>{32};
  std::vector<double> densities = crossover ? std::vector<double>{0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.75, 0.9}
                                            : std::vector<double>{0.1, 0.25, 0.5};
  if (crossover && !g_cuda) blocks = {8, 16, 32, 64};
  std::printf("\n### Block-sparse Linear %s, W %lldx%lld, batch %lld, %s\n\n",
              crossover ? "crossover sweep" : "forward", static_cast<long long>(out),
              static_cast<long long>(in), static_cast<long long>(batch), c10::toString(dtype));
  std::printf("| block | density | dense linear (us) | BSR kernel (us) | kernel speed-up | dispatched (us) | dispatched speed-up | torch BSR matmul (us) | vs torch BSR |\n"
              "|---|---|---|---|---|---|---|---|---|\n");
  const auto x = torch::randn({batch, in}, opts(dtype));
  for (int64_t b : blocks)
    for (double d : densities) {
      const auto w = block_weight(out, in, b, d, dtype);
      const auto m = k::bsr_from_dense(w, b);
      const k::BsrLinear layer(w, {}, b);
      at::NoGradGuard no_grad;
      auto [dense, sparse] = compare_us([&] { torch::linear(x, w); },
                                        [&] { k::bsr_linear_sparse(x, m, {}); }, iters);
      if (crossover) {  // dense vs the kernel only
        std::printf("| %lld | %.0f%% | %.1f | %.1f | %.2fx | | | | |\n", static_cast<long long>(b),
                    m.density() * 100, dense, sparse, dense / sparse);
        continue;
      }
      auto [dense2, disp] = compare_us([&] { torch::linear(x, w); }, [&] { layer.forward(x); }, iters);
      double tb = NAN;
      try {
        const auto wb = w.to_sparse_bsr({b, b});
        const auto xt = x.t().contiguous();
        tb = compare_us([&] { torch::mm(wb, xt); }, [&] {}, iters).first;
      } catch (const std::exception&) {
      }
      std::printf("| %lld | %.0f%% | %.1f | %.1f | %.2fx | %.1f%s | %.2fx | %.1f | %.2fx |\n",
                  static_cast<long long>(b), m.density() * 100, dense, sparse, dense / sparse,
                  disp, layer.sparse() ? "" : " (dense)", dense2 / disp, tb, tb / sparse);
    }
}

}  // namespace

int main(int argc, char** argv) {
  std::string what = "all";
  std::string python = SCULPT_BENCH_PYTHON;
  int threads = 1;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--device") && i + 1 < argc) g_cuda = !std::strcmp(argv[++i], "cuda");
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--python") && i + 1 < argc) python = argv[++i];
    else what = argv[i];
  }
  if (g_cuda && !torch::cuda::is_available()) {
    std::printf("bench_kernels: --device cuda but no CUDA device\n");
    return 77;
  }
  at::set_num_threads(threads);
  torch::manual_seed(0);
  std::printf("bench_kernels: device %s, %d thread(s), CPU kernels %s, load average %s\n%s\n",
              g_cuda ? "cuda" : "cpu", threads, k::cpu_capability_name(), load_average().c_str(),
              g_cuda ? "times: wall clock after cudaDeviceSynchronize, medians"
                     : "times: process CPU time per call (robust to other processes' load), medians");
  if (what == "fq" || what == "all") bench_fq();
  if (what == "bsr" || what == "all") bench_bsr(false);
  if (what == "bsr-crossover") bench_bsr(true);
  if (what != "bsr-crossover" && !python.empty() && python != "none") {
    std::fflush(stdout);
    const std::string cmd = "\"" + python + "\" " SCULPT_SOURCE_DIR "/bench/kernels_torch.py " +
                            SCULPT_KERNELS_LIB + " --device " + (g_cuda ? "cuda" : "cpu") +
                            " --threads " + std::to_string(threads);
    if (std::system(cmd.c_str()) != 0) std::printf("(the Python side failed: %s)\n", cmd.c_str());
  }
  std::printf("\nload average after: %s\n", load_average().c_str());
  return 0;
}
