// The CUDA toolchain probe runs on a GPU and matches ATen (labelled `cuda`; skipped without one).
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include "kernels/probe/probe.h"

TEST_CASE("our own CUDA kernel runs and matches ATen", "[cuda]") {
  REQUIRE(sculpt::kernels::built_with_cuda());
  for (int64_t n : {1, 1000, 1 << 20, (1 << 20) + 3}) {
    auto x = torch::randn({n}, torch::kCUDA);
    auto y = torch::randn({n}, torch::kCUDA);
    auto got = sculpt::kernels::probe_axpy(x, y, 0.75);
    auto want = y + 0.75 * x;
    CHECK(torch::allclose(got, want, 1e-6, 1e-6));
  }
}
