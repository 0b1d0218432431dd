#include "core/run/run_context.h"

#include <torch/cuda.h>
#include <torch/utils.h>
#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/logging/logging.h"

namespace sculpt {

namespace {
// The folder of the shared library that holds `symbol`.
std::filesystem::path folder_of(void* symbol) {
  Dl_info where{};
  if (!dladdr(symbol, &where) || !where.dli_fname) return {};
  return std::filesystem::path(where.dli_fname).parent_path();
}

// Loads `lib` for good (its static initializers register CUDA kernels and backends); false
// with a warning when it does not load.
bool load_library(const std::filesystem::path& lib) {
  if (dlopen(lib.c_str(), RTLD_NOW | RTLD_GLOBAL)) return true;
  log::warn("an NVIDIA driver is present but ", lib.string(), " did not load (", dlerror(),
            "): CUDA is not available to this process");
  return false;
}
}  // namespace

bool load_cuda_runtime() {
  static const bool usable = [] {
    namespace fs = std::filesystem;
    std::error_code ec;
    const char* force = std::getenv("SCULPT_LOAD_CUDA");  // tests: load without a driver
    if ((force && std::string(force) == "1") || fs::exists("/proc/driver/nvidia/version", ec) ||
        fs::exists("/dev/nvidiactl", ec)) {
      const fs::path torch_dir = folder_of(reinterpret_cast<void*>(&at::get_num_threads));
      const fs::path our_dir = folder_of(reinterpret_cast<void*>(&load_cuda_runtime));
      if (load_library(torch_dir / "libtorch_cuda.so"))
        for (const char* ours : {"libsculpt_kernels_cuda.so", "libsculpt_nccl.so"})
          if (fs::exists(our_dir / ours, ec)) load_library(our_dir / ours);
    }
    return torch::cuda::is_available();
  }();
  return usable;
}

std::string cuda_status() {
  const bool usable = load_cuda_runtime();
  auto loaded = [](const std::filesystem::path& lib) {
    void* h = dlopen(lib.c_str(), RTLD_NOW | RTLD_NOLOAD);
    if (h) dlclose(h);  // drops only the reference RTLD_NOLOAD took
    return h != nullptr;
  };
  const auto torch_dir = folder_of(reinterpret_cast<void*>(&at::get_num_threads));
  const auto our_dir = folder_of(reinterpret_cast<void*>(&load_cuda_runtime));
  if (!loaded(torch_dir / "libtorch_cuda.so"))
    return "CUDA: not loaded (no NVIDIA driver found; a CPU process)";
  return detail::concat("CUDA: LibTorch's CUDA libraries loaded; GPUs: ",
                        usable ? static_cast<int>(torch::cuda::device_count()) : 0,
                        "; Sculpt's CUDA kernels: ",
                        loaded(our_dir / "libsculpt_kernels_cuda.so") ? "loaded" : "not built");
}

c10::Device resolve_device(const std::string& spec, int local_rank) {
  bool has_cuda = load_cuda_runtime();
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
  const bool cuda = load_cuda_runtime();  // before torch::manual_seed asks ATen about CUDA
  torch::manual_seed(s);
  if (cuda) torch::cuda::manual_seed_all(s);
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

namespace {

// A symbolic link planted inside a run directory (say metrics.jsonl -> ~/.bashrc, or
// checkpoints -> /etc) would make Sculpt write through it: refused before anything is written.
// The run directory itself may be a link (a folder on a bigger disk); what is inside may not.
void refuse_planted_links(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  for (const fs::path& d : {dir, dir / "checkpoints"}) {
    std::error_code ec;
    if (!fs::is_directory(d, ec) || (d != dir && fs::is_symlink(d, ec))) continue;
    for (const auto& e : fs::directory_iterator(d, ec)) {
      if (!e.is_symlink(ec)) continue;
      const auto to = fs::read_symlink(e.path(), ec);
      throw UserError("run.output_dir: " + e.path().string() + " is a symbolic link (to " +
                      to.string() +
                      "); Sculpt never writes through a link inside a run directory: remove it, "
                      "or choose another run.output_dir");
    }
  }
}

}  // namespace

RunContext RunContext::create(const config::Config& cfg, int rank, int world_size,
                              int local_rank) {
  // Everything that can be refused is checked before the directory exists.
  c10::Device device = resolve_device(cfg.run.device, local_rank < 0 ? rank : local_rank);
  auto dir = dir_for(cfg);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  SCULPT_CHECK(!ec, "run.output_dir: cannot create ", dir.string(), ": ", ec.message());
  refuse_planted_links(dir);
  if (rank == 0) io::write_file_atomic((dir / "config.yaml").string(), cfg.dump());
  log::add_file(
      (dir / (rank == 0 ? "log.txt" : "log.rank" + std::to_string(rank) + ".txt")).string());
  // Every rank draws the same random numbers (model and pass initialisation agree across the
  // ranks of a data-parallel run); the ranks' data shards and augmentations differ.
  auto rng = seed_everything(cfg.run.seed);
  return RunContext(cfg, dir, device, rank, world_size, rng);
}

}  // namespace sculpt
