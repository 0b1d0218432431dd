#include "kernels/cpu/capability.h"

#include <cstdlib>
#include <cstring>

namespace sculpt::kernels {

namespace {
CpuCapability detect() {
  CpuCapability best = CpuCapability::default_;
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = CpuCapability::avx2;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    best = CpuCapability::avx512;
#endif
  if (const char* cap = std::getenv("SCULPT_CPU_CAPABILITY")) {
    CpuCapability want = best;
    if (std::strcmp(cap, "default") == 0) want = CpuCapability::default_;
    if (std::strcmp(cap, "avx2") == 0) want = CpuCapability::avx2;
    if (static_cast<int>(want) < static_cast<int>(best)) best = want;
  }
  return best;
}
}  // namespace

CpuCapability cpu_capability() {
  static const CpuCapability cap = detect();
  return cap;
}

const char* cpu_capability_name() {
  switch (cpu_capability()) {
    case CpuCapability::avx512: return "avx512";
    case CpuCapability::avx2: return "avx2";
    default: return "default";
  }
}

}  // namespace sculpt::kernels
