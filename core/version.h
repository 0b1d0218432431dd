#pragma once

namespace sculpt {
// "sculpt 0.1.0 (LibTorch 2.11.0, CUDA kernels: on)"
const char* version_string();
}  // namespace sculpt
