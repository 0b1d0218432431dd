// RunContext: what every component of a run may read — the resolved config, the run directory,
// the device, the rank/world, and the seed already applied to torch and std RNGs.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>

#include "core/config/config.h"

namespace sculpt {

// "auto" -> cuda:0 when available else cpu; "cuda"/"cuda:N" -> UserError when CUDA is absent
// or N is out of range.
c10::Device resolve_device(const std::string& spec, int local_rank = 0);

// Seeds torch (CPU and CUDA) and returns a std engine seeded the same way; seed + rank.
std::mt19937_64 seed_everything(int64_t seed, int rank = 0);

// Wall seconds since this process started (from /proc; for "time to first step").
double seconds_since_process_start();

class RunContext {
 public:
  // Creates the run directory (run.output_dir or runs/<run.name>), writes the resolved
  // config.yaml atomically, opens log.txt, seeds RNGs and resolves the device.
  static RunContext create(const config::Config& cfg, int rank = 0, int world_size = 1);

  const config::Config& config() const { return config_; }
  const std::filesystem::path& dir() const { return dir_; }
  c10::Device device() const { return device_; }
  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  std::mt19937_64& rng() { return rng_; }

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
};

}  // namespace sculpt
