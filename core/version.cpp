#include "core/version.h"

#include <torch/version.h>

#include <string>

namespace sculpt {

const char* version_string() {
#ifdef SCULPT_WITH_CUDA
  static const std::string kVersion =
      std::string("sculpt " SCULPT_VERSION " (LibTorch ") + TORCH_VERSION + ", CUDA kernels: on)";
#else
  static const std::string kVersion =
      std::string("sculpt " SCULPT_VERSION " (LibTorch ") + TORCH_VERSION + ", CUDA kernels: off)";
#endif
  return kVersion.c_str();
}

}  // namespace sculpt
