// libsculpt_nccl.so: ProcessGroupNCCL behind process_group.cpp's backend factory.
#include "distributed/nccl_backend.h"

#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <cstdlib>

namespace sculpt::distributed {

namespace {

c10::intrusive_ptr<c10d::Backend> make_nccl(const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                            int size, std::chrono::milliseconds timeout,
                                            int device_index) {
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(device_index));  // before any NCCL call
  // A timeout raises in wait() instead of tearing the process down without a message.
  setenv("TORCH_NCCL_BLOCKING_WAIT", "1", 0);
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  opts->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(
      c10::make_intrusive<c10d::PrefixStore>("nccl/", store), rank, size, opts);
}

const bool registered = [] {
  nccl_maker() = &make_nccl;
  return true;
}();

}  // namespace

}  // namespace sculpt::distributed
