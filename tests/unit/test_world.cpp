// Rank/world discovery from torchrun's and SLURM's environment variables.
#include <catch2/catch.hpp>

#include <map>

#include "core/error.h"
#include "distributed/world.h"

using sculpt::distributed::world_from_env;

namespace {
sculpt::distributed::EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> const char* {
    static thread_local std::string hold;
    auto it = vars.find(name);
    if (it == vars.end()) return nullptr;
    hold = it->second;
    return hold.c_str();
  };
}
}  // namespace

TEST_CASE("world: a plain process is rank 0 of 1", "[distributed]") {
  auto w = world_from_env(env_of({}));
  CHECK(w.rank == 0);
  CHECK(w.world_size == 1);
  CHECK(w.source == "single process");
}

TEST_CASE("world: torchrun variables", "[distributed]") {
  auto w = world_from_env(env_of({{"RANK", "3"},
                                  {"LOCAL_RANK", "1"},
                                  {"WORLD_SIZE", "4"},
                                  {"LOCAL_WORLD_SIZE", "2"},
                                  {"MASTER_ADDR", "10.0.0.5"},
                                  {"MASTER_PORT", "1234"}}));
  CHECK(w.rank == 3);
  CHECK(w.local_rank == 1);
  CHECK(w.world_size == 4);
  CHECK(w.local_world_size == 2);
  CHECK(w.master_addr == "10.0.0.5");
  CHECK(w.master_port == 1234);
  CHECK(w.source == "torchrun");
}

TEST_CASE("world: SLURM variables when torchrun's are absent", "[distributed]") {
  auto w = world_from_env(env_of({{"SLURM_PROCID", "5"},
                                  {"SLURM_NTASKS", "8"},
                                  {"SLURM_LOCALID", "1"},
                                  {"SLURM_NODELIST", "gpu[07-09,12],cpu1"}}));
  CHECK(w.rank == 5);
  CHECK(w.world_size == 8);
  CHECK(w.local_rank == 1);
  CHECK(w.master_addr == "gpu07");
  CHECK(w.source == "SLURM");
  CHECK(sculpt::distributed::first_slurm_host("node1,node2") == "node1");
  CHECK(sculpt::distributed::first_slurm_host("a[3]") == "a3");
}

TEST_CASE("world: malformed or inconsistent variables are named", "[distributed]") {
  CHECK_THROWS_WITH(world_from_env(env_of({{"RANK", "x"}, {"WORLD_SIZE", "2"}})),
                    Catch::Contains("RANK='x'"));
  CHECK_THROWS_WITH(world_from_env(env_of({{"RANK", "2"}, {"WORLD_SIZE", "2"}})),
                    Catch::Contains("rank 2 is not below world size 2"));
  CHECK_THROWS_AS(world_from_env(env_of({{"WORLD_SIZE", "0"}})), sculpt::UserError);
}
