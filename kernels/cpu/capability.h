// CPU kernels compiled once per instruction set (kernels/CMakeLists.txt builds each *_cpu.cpp as
// cpu_default, cpu_avx2 and cpu_avx512, with the matching at::vec CPU_CAPABILITY), and the
// choice among them at run time. SCULPT_CPU_CAPABILITY=default|avx2|avx512 caps the choice
// (for tests and benchmarks of the fallback paths).
#pragma once

namespace sculpt::kernels {

enum class CpuCapability { default_, avx2, avx512 };

// The best set this CPU supports, capped by SCULPT_CPU_CAPABILITY when set.
CpuCapability cpu_capability();
const char* cpu_capability_name();

}  // namespace sculpt::kernels

// Declares a kernel function in each per-capability namespace and picks one at run time:
// SCULPT_CPU_DECLARE(void, forward, (args...)) inside namespace ns; then
// SCULPT_CPU_CALL(ns, forward, args...).
#define SCULPT_CPU_DECLARE(ret, name, params)     \
  namespace cpu_default { ret name params; }      \
  namespace cpu_avx2 { ret name params; }         \
  namespace cpu_avx512 { ret name params; }
#define SCULPT_CPU_CALL(ns, name, ...)                                             \
  (::sculpt::kernels::cpu_capability() == ::sculpt::kernels::CpuCapability::avx512 \
       ? ns::cpu_avx512::name(__VA_ARGS__)                                         \
   : ::sculpt::kernels::cpu_capability() == ::sculpt::kernels::CpuCapability::avx2 \
       ? ns::cpu_avx2::name(__VA_ARGS__)                                           \
       : ns::cpu_default::name(__VA_ARGS__))
