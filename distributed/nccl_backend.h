// The NCCL backend's maker lives in libsculpt_nccl.so, linked with LibTorch's CUDA libraries,
// and registers itself here when loaded (sculpt::load_cuda_runtime() loads it where a GPU driver
// is), so that CPU processes never load CUDA. Used by process_group.cpp only.
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>

namespace sculpt::distributed {

using NcclMaker = c10::intrusive_ptr<c10d::Backend> (*)(const c10::intrusive_ptr<c10d::Store>& store,
                                                        int rank, int size,
                                                        std::chrono::milliseconds timeout,
                                                        int device_index);
// Null until libsculpt_nccl.so is loaded.
NcclMaker& nccl_maker();

}  // namespace sculpt::distributed
