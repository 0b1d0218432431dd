// The one adapter between Sculpt and c10d (PyTorch's distributed engine): a TCPStore
// rendezvous (rank 0 hosts it at MASTER_ADDR:MASTER_PORT) and a ProcessGroupGloo (CPU) or
// ProcessGroupNCCL (CUDA) behind the Collectives interface. No other file calls c10d, whose C++
// API moves between releases. Every failure or timeout is an error naming the rank, the
// operation and distributed.timeout_s, never a silent hang.
#pragma once

#include <c10/core/Device.h>

#include <memory>
#include <string>

#include "core/config/config.h"
#include "core/run/collectives.h"
#include "distributed/world.h"

namespace sculpt::distributed {

// Whether this build has the NCCL backend (CUDA builds).
bool nccl_built();

// The backend distributed.backend names for `device`: auto -> nccl on CUDA, gloo on CPU.
// UserError for nccl on a CPU device or in a build without it.
std::string choose_backend(const std::string& configured, c10::Device device);

// Joins the job `world` describes and returns its collectives. On CUDA the current device is
// set to `device` first (one GPU per local rank).
std::shared_ptr<Collectives> connect(const WorldInfo& world, const config::DistributedConfig& cfg,
                                     c10::Device device);

// Compares every rank's config hash; UserError on every rank naming the ranks whose config
// differs from rank 0's.
void check_same_config(Collectives& comm, const std::string& hash);

}  // namespace sculpt::distributed
