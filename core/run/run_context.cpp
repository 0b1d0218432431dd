#include "core/run/run_context.h"

#include <torch/cuda.h>
#include <torch/utils.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/logging/logging.h"

namespace sculpt {

c10::Device resolve_device(const std::string& spec, int local_rank) {
  bool has_cuda = torch::cuda::is_available();
  if (spec == "cpu") return c10::Device(c10::kCPU);
  if (spec == "auto") {
    if (!has_cuda) return c10::Device(c10::kCPU);
    auto n = static_cast<int>(torch::cuda::device_count());
    return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(local_rank % n));
  }
  SCULPT_CHECK(spec.rfind("cuda", 0) == 0, "run.device: expected auto, cpu, cuda or cuda:N; got '",
               spec, "'");
  SCULPT_CHECK(has_cuda, "run.device: '", spec,
               "' was asked for but CUDA is not available here (no GPU or no driver); "
               "use run.device=cpu or run.device=auto");
  auto n = static_cast<int>(torch::cuda::device_count());
  int index = local_rank;
  if (spec.size() > 5) index = std::stoi(spec.substr(5));
  SCULPT_CHECK(index < n, "run.device: '", spec, "' asks for GPU ", index, " but only ", n,
               " are visible");
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
}

double seconds_since_process_start() {
  std::ifstream stat("/proc/self/stat"), up("/proc/uptime");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  auto close = text.rfind(')');  // the command name may hold spaces; fields follow it
  if (close == std::string::npos) return 0;
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i) {
  }
  double uptime = 0;
  up >> uptime;
  const double start = std::stod(field) / static_cast<double>(sysconf(_SC_CLK_TCK));
  return uptime - start;
}

std::mt19937_64 seed_everything(int64_t seed, int rank) {
  auto s = static_cast<uint64_t>(seed) + static_cast<uint64_t>(rank);
  torch::manual_seed(s);
  if (torch::cuda::is_available()) torch::cuda::manual_seed_all(s);
  std::srand(static_cast<unsigned>(s));
  return std::mt19937_64(s);
}

std::filesystem::path RunContext::dir_for(const config::Config& cfg) {
  if (!cfg.run.output_dir.empty()) return cfg.run.output_dir;
  return std::filesystem::path("runs") / cfg.run.name;
}

RunContext::RunContext(config::Config cfg, std::filesystem::path dir, c10::Device device, int rank,
                       int world_size, std::mt19937_64 rng)
    : config_(std::move(cfg)),
      dir_(std::move(dir)),
      device_(device),
      rank_(rank),
      world_size_(world_size),
      rng_(rng) {}

RunContext RunContext::create(const config::Config& cfg, int rank, int world_size,
                              int local_rank) {
  // Everything that can be refused is checked before the directory exists.
  c10::Device device = resolve_device(cfg.run.device, local_rank < 0 ? rank : local_rank);
  auto dir = dir_for(cfg);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  SCULPT_CHECK(!ec, "run.output_dir: cannot create ", dir.string(), ": ", ec.message());
  if (rank == 0) io::write_file_atomic((dir / "config.yaml").string(), cfg.dump());
  log::add_file(
      (dir / (rank == 0 ? "log.txt" : "log.rank" + std::to_string(rank) + ".txt")).string());
  // Every rank draws the same random numbers (model and pass initialisation agree across the
  // ranks of a data-parallel run); the ranks' data shards and augmentations differ.
  auto rng = seed_everything(cfg.run.seed);
  return RunContext(cfg, dir, device, rank, world_size, rng);
}

}  // namespace sculpt
