#include "cli/app.h"
#include "core/run/run_context.h"

int main(int argc, char** argv) {
  sculpt::load_cuda_runtime();  // first: ATen decides once whether CUDA exists
  return sculpt::cli::run_sculpt(argc, argv);
}
