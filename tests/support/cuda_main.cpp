// Main of the CUDA tests: with no usable GPU (or a build without CUDA kernels) it reports every
// test skipped (exit code 77, which ctest counts as skipped) instead of passing vacuously. Listing
// tests always works.
#define CATCH_CONFIG_RUNNER
#include <torch/cuda.h>
#include <catch2/catch.hpp>

#include <cstring>
#include <iostream>

#include "core/run/run_context.h"
#include "kernels/probe/probe.h"

int main(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--list", 6) == 0) listing = true;
  if (!listing && !sculpt::load_cuda_runtime()) {
    std::cout << "SKIPPED: no CUDA device available (torch::cuda::is_available() is false)\n";
    return 77;
  }
  if (!listing && !sculpt::kernels::built_with_cuda()) {
    std::cout << "SKIPPED: Sculpt was built without CUDA kernels (SCULPT_CUDA=OFF)\n";
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
