// Where this process sits in a job: read from torchrun's variables (RANK, LOCAL_RANK,
// WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), or SLURM's when torchrun's are
// absent (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, first host of SLURM_NODELIST).
#pragma once

#include <functional>
#include <string>

namespace sculpt::distributed {

struct WorldInfo {
  int rank = 0;
  int local_rank = 0;
  int world_size = 1;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string source = "single process";  // "torchrun", "SLURM" or "single process"
};

using EnvLookup = std::function<const char*(const char*)>;

// Throws UserError naming the variable when one is malformed or inconsistent
// (e.g. RANK >= WORLD_SIZE).
WorldInfo world_from_env(const EnvLookup& env);
WorldInfo world_from_env();  // the process environment

// First host of a SLURM node list: "gpu[01-04,07],cpu3" -> "gpu01".
std::string first_slurm_host(const std::string& nodelist);

}  // namespace sculpt::distributed
