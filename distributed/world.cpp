#include "distributed/world.h"

#include <cstdlib>

#include "core/error.h"

namespace sculpt::distributed {

namespace {
int to_int(const EnvLookup& env, const char* name, int fallback, int min) {
  const char* v = env(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  SCULPT_CHECK(*end == '\0' && x >= min && x < (1L << 30), "environment variable ", name, "='", v,
               "' is not an integer >= ", min);
  return static_cast<int>(x);
}
}  // namespace

std::string first_slurm_host(const std::string& nodelist) {
  // Up to the first comma that is not inside brackets.
  size_t depth = 0, end = nodelist.size();
  for (size_t i = 0; i < nodelist.size(); ++i) {
    if (nodelist[i] == '[')
      ++depth;
    else if (nodelist[i] == ']' && depth)
      --depth;
    else if (nodelist[i] == ',' && depth == 0) {
      end = i;
      break;
    }
  }
  std::string first = nodelist.substr(0, end);
  auto open = first.find('[');
  if (open == std::string::npos) return first;
  std::string prefix = first.substr(0, open);
  std::string range = first.substr(open + 1, first.find(']') - open - 1);
  std::string head = range.substr(0, range.find_first_of(",-"));
  return prefix + head;
}

WorldInfo world_from_env(const EnvLookup& env) {
  WorldInfo w;
  if (env("WORLD_SIZE") || env("RANK")) {
    w.source = "torchrun";
    w.world_size = to_int(env, "WORLD_SIZE", 1, 1);
    w.rank = to_int(env, "RANK", 0, 0);
    w.local_rank = to_int(env, "LOCAL_RANK", w.rank, 0);
    w.local_world_size = to_int(env, "LOCAL_WORLD_SIZE", w.world_size, 1);
    if (const char* a = env("MASTER_ADDR"); a && *a) w.master_addr = a;
    w.master_port = to_int(env, "MASTER_PORT", w.master_port, 1);
  } else if (env("SLURM_PROCID") && env("SLURM_NTASKS")) {
    w.source = "SLURM";
    w.rank = to_int(env, "SLURM_PROCID", 0, 0);
    w.world_size = to_int(env, "SLURM_NTASKS", 1, 1);
    w.local_rank = to_int(env, "SLURM_LOCALID", 0, 0);
    w.local_world_size = to_int(env, "SLURM_NTASKS_PER_NODE", w.world_size, 1);
    if (const char* n = env("SLURM_NODELIST"); n && *n) w.master_addr = first_slurm_host(n);
    if (const char* a = env("MASTER_ADDR"); a && *a) w.master_addr = a;
    w.master_port = to_int(env, "MASTER_PORT", w.master_port, 1);
  }
  SCULPT_CHECK(w.rank < w.world_size, w.source, ": rank ", w.rank, " is not below world size ",
               w.world_size);
  SCULPT_CHECK(w.master_port < 65536, "MASTER_PORT ", w.master_port, " is not a TCP port");
  return w;
}

WorldInfo world_from_env() {
  return world_from_env([](const char* name) { return std::getenv(name); });
}

}  // namespace sculpt::distributed
