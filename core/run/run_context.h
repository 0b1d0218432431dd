// RunContext: what every component of a run may read — the resolved config, the run directory,
// the device, the rank/world, and the seed already applied to torch and std RNGs.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>

#include "core/config/config.h"
#include "core/run/collectives.h"

namespace sculpt {

// Loads LibTorch's CUDA library (libtorch_cuda.so, next to libtorch_cpu.so) when this machine
// has an NVIDIA driver and Sculpt was built without its own CUDA kernels (then only the CPU
// libraries are linked: CPU processes stay ~250 MB lighter). It must run before anything asks
// ATen about CUDA (ATen decides once): `sculpt`'s main, resolve_device and seed_everything call
// it. Returns whether CUDA is usable.
bool load_cuda_runtime();
// One line for `sculpt --version`: whether CUDA's libraries and Sculpt's CUDA kernels are loaded
// in this process, and how many GPUs it sees.
std::string cuda_status();

// "auto" -> cuda:0 when available else cpu; "cuda"/"cuda:N" -> UserError when CUDA is absent
// or N is out of range.
c10::Device resolve_device(const std::string& spec, int local_rank = 0);

// Seeds torch (CPU and CUDA) and returns a std engine seeded the same way; seed + rank (runs
// seed every rank alike: RunContext passes rank 0).
std::mt19937_64 seed_everything(int64_t seed, int rank = 0);

// Wall seconds since this process started (from /proc; for "time to first step").
double seconds_since_process_start();

class RunContext {
 public:
  // Creates the run directory (run.output_dir or runs/<run.name>), writes the resolved
  // config.yaml atomically, opens log.txt, seeds RNGs and resolves the device.
  // The device is picked for `local_rank` (-1: the rank).
  static RunContext create(const config::Config& cfg, int rank = 0, int world_size = 1,
                           int local_rank = -1);

  const config::Config& config() const { return config_; }
  const std::filesystem::path& dir() const { return dir_; }
  c10::Device device() const { return device_; }
  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  std::mt19937_64& rng() { return rng_; }
  // How the ranks agree (sum metrics, broadcast masks); the single-process one by default.
  Collectives& collectives() const { return comm_ ? *comm_ : local_collectives(); }
  void set_collectives(std::shared_ptr<Collectives> comm) { comm_ = std::move(comm); }
  // Whether the process joined a process group (torchrun, sculpt-run, SLURM): training then
  // runs under DDP, also at world size 1.
  bool data_parallel() const { return comm_ != nullptr; }
  // Rank 0 alone writes the run's files (checkpoints, metrics, summary, report).
  bool writes_files() const { return rank_ == 0; }

  static std::filesystem::path dir_for(const config::Config& cfg);

 private:
  RunContext(config::Config cfg, std::filesystem::path dir, c10::Device device, int rank,
             int world_size, std::mt19937_64 rng);
  config::Config config_;
  std::filesystem::path dir_;
  c10::Device device_;
  int rank_;
  int world_size_;
  std::mt19937_64 rng_;
  std::shared_ptr<Collectives> comm_;
};

}  // namespace sculpt
