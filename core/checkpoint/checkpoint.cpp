#include "core/checkpoint/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize.h>
#include <torch/utils.h>

#include <algorithm>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/safetensors.h"
#include "core/models/model.h"

#include <zlib.h>

#include "core/logging/logging.h"

namespace fs = std::filesystem;

namespace sculpt {

namespace {

void fsync_path(const fs::path& p, bool directory) {
  int fd = ::open(p.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

std::string read_pointer(const fs::path& p) {
  std::ifstream in(p);
  std::string name;
  std::getline(in, name);
  return name;
}

int64_t step_of(const std::string& name) {
  if (name.rfind("step_", 0) != 0 || name.find(".tmp") != std::string::npos) return -1;
  try {
    return std::stoll(name.substr(5));
  } catch (...) {
    return -1;
  }
}

// torch's default CPU generator: what dropout, randperm without a generator and init draw from.
at::Tensor cpu_rng_state() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_cpu_rng_state(const at::Tensor& state) {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

// manifest.json: every other file of the folder with its size and CRC-32, written last (before
// the folder is renamed into place), so that a truncated or altered file is found on resume.
uint32_t crc_of(const fs::path& p, int64_t& bytes) {
  std::ifstream in(p, std::ios::binary);
  std::vector<char> buf(1 << 20);
  uLong crc = crc32(0L, Z_NULL, 0);
  bytes = 0;
  while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0) {
    crc = crc32(crc, reinterpret_cast<const Bytef*>(buf.data()), static_cast<uInt>(in.gcount()));
    bytes += in.gcount();
  }
  return static_cast<uint32_t>(crc);
}

void write_manifest(const fs::path& dir) {
  nlohmann::json files = nlohmann::json::object();
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file() || e.path().filename() == "manifest.json") continue;
    int64_t bytes = 0;
    const uint32_t crc = crc_of(e.path(), bytes);
    files[e.path().filename().string()] = {{"bytes", bytes}, {"crc32", crc}};
  }
  io::write_file_atomic((dir / "manifest.json").string(),
                        nlohmann::json{{"files", files}}.dump(2) + "\n");
}

}  // namespace

// "" when every file manifest.json lists is there with its size and CRC-32 (a checkpoint
// written before manifests existed has none and passes); else what is wrong, naming the file.
std::string verify_checkpoint(const fs::path& ckpt) {
  const fs::path manifest = ckpt / "manifest.json";
  if (!fs::exists(manifest))
    return fs::exists(ckpt / "trainer.json") ? "" : (ckpt / "trainer.json").string() + ": missing";
  try {
    const auto j = nlohmann::json::parse(io::read_file(manifest.string()));
    for (const auto& [name, want] : j.at("files").items()) {
      const fs::path f = ckpt / fs::path(name).filename();
      if (!fs::is_regular_file(f)) return f.string() + ": missing";
      int64_t bytes = 0;
      const uint32_t crc = crc_of(f, bytes);
      const auto listed = want.at("bytes").get<int64_t>();
      if (bytes != listed)
        return f.string() + ": " + std::to_string(bytes) + " bytes, but manifest.json says " +
               std::to_string(listed) + " (truncated?)";
      if (crc != want.at("crc32").get<uint32_t>())
        return f.string() + ": its CRC-32 differs from manifest.json's (altered?)";
    }
  } catch (const std::exception& e) {
    return manifest.string() + ": malformed (" + e.what() + ")";
  }
  return "";
}

CheckpointStore::CheckpointStore(const fs::path& run_dir, int64_t keep_last)
    : dir_(run_dir / "checkpoints"), keep_last_(std::max<int64_t>(1, keep_last)) {}

fs::path CheckpointStore::save(models::Model& model, torch::optim::Optimizer& optimizer,
                               const TrainState& state, bool is_best,
                               const std::function<void(const fs::path&)>& extra) {
  fs::create_directories(dir_);
  const std::string name = "step_" + std::to_string(state.step);
  const fs::path tmp = dir_ / (name + ".tmp"), final_dir = dir_ / name;
  try {
    write_into(tmp, model, optimizer, state, extra);
  } catch (const std::exception& e) {
    // A full disk (or a file-size limit, or a vanished folder): the half-written folder goes,
    // the checkpoints before it stay as they were, and the run ends naming both.
    std::error_code ec;
    fs::remove_all(tmp, ec);
    const auto previous = fs::exists(dir_ / "latest") ? (dir_ / read_pointer(dir_ / "latest")).string()
                                                      : std::string("none");
    throw std::runtime_error("cannot write the checkpoint " + final_dir.string() + " (" + e.what() +
                             "); the previous checkpoint, " + previous + ", is intact");
  }
  fs::remove_all(final_dir);
  fs::rename(tmp, final_dir);
  fsync_path(dir_, true);
  io::write_file_atomic((dir_ / "latest").string(), name + "\n");
  if (is_best) io::write_file_atomic((dir_ / "best").string(), name + "\n");
  prune(read_pointer(dir_ / "best"));
  return final_dir;
}

// Writes one checkpoint's files into `tmp` (made anew) and syncs them.
void CheckpointStore::write_into(const fs::path& tmp, models::Model& model,
                                 torch::optim::Optimizer& optimizer, const TrainState& state,
                                 const std::function<void(const fs::path&)>& extra) {
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  io::save_safetensors(
      (tmp / "model.safetensors").string(), model.state_tensors(),
      {{"sculpt_config_hash", state.config_hash}, {"sculpt_step", std::to_string(state.step)}});
  std::ostringstream opt;
  torch::save(optimizer, opt);
  io::write_file_atomic((tmp / "optimizer.pt").string(), opt.str());
  io::save_safetensors((tmp / "state.safetensors").string(),
                       io::NamedTensors{{"rng.cpu", cpu_rng_state()}});
  nlohmann::json j = {{"step", state.step},
                      {"epoch", state.epoch},
                      {"batch_in_epoch", state.batch_in_epoch},
                      {"best_metric", state.best_metric},
                      {"has_best", state.has_best},
                      {"evals_since_best", state.evals_since_best},
                      {"config_hash", state.config_hash},
                      {"world_size", state.world_size}};
  io::write_file_atomic((tmp / "trainer.json").string(), j.dump(2) + "\n");
  if (extra) extra(tmp);
  write_manifest(tmp);
  fsync_path(tmp, true);
}

void CheckpointStore::prune(const std::string& keep_best) const {
  std::vector<std::pair<int64_t, fs::path>> all;
  std::vector<fs::path> half_written;  // step_N.tmp left by a process killed while saving
  for (const auto& e : fs::directory_iterator(dir_)) {
    const std::string name = e.path().filename().string();
    int64_t s = step_of(name);
    if (e.is_directory() && s >= 0) all.emplace_back(s, e.path());
    if (e.is_directory() && name.rfind("step_", 0) == 0 && e.path().extension() == ".tmp")
      half_written.push_back(e.path());
  }
  for (const auto& p : half_written) fs::remove_all(p);
  std::sort(all.begin(), all.end());
  const auto n = static_cast<int64_t>(all.size());
  for (int64_t i = 0; i < n - keep_last_; ++i)
    if (all[static_cast<size_t>(i)].second.filename() != keep_best)
      fs::remove_all(all[static_cast<size_t>(i)].second);
}

std::optional<fs::path> CheckpointStore::latest() const {
  const fs::path ptr = dir_ / "latest";
  if (!fs::exists(ptr)) return std::nullopt;
  fs::path p = dir_ / read_pointer(ptr);
  if (!fs::is_directory(p)) return std::nullopt;
  const std::string why = verify_checkpoint(p);
  if (why.empty()) return p;
  // A corrupt or partial newest checkpoint: the newest older one that verifies, with a warning.
  std::vector<std::pair<int64_t, fs::path>> older;
  const int64_t newest = step_of(p.filename().string());
  for (const auto& e : fs::directory_iterator(dir_)) {
    const int64_t s = step_of(e.path().filename().string());
    if (e.is_directory() && s >= 0 && s < newest) older.emplace_back(s, e.path());
  }
  std::sort(older.rbegin(), older.rend());
  for (const auto& [s, q] : older)
    if (verify_checkpoint(q).empty()) {
      log::warn("checkpoint ", p.string(), " is corrupt or partial (", why, "); resuming from ",
                q.string(), " instead");
      return q;
    }
  throw UserError(p.string() + ": the newest checkpoint is corrupt or partial (" + why +
                  ") and no older checkpoint verifies");
}

TrainState CheckpointStore::load(const fs::path& ckpt, models::Model& model,
                                 torch::optim::Optimizer& optimizer) {
  if (const std::string why = verify_checkpoint(ckpt); !why.empty())
    throw UserError(why + "; the checkpoint " + ckpt.string() + " is corrupt or partial");
  for (const char* f : {"model.safetensors", "optimizer.pt", "state.safetensors", "trainer.json"})
    SCULPT_CHECK(fs::exists(ckpt / f), ckpt.string(), ": not a complete checkpoint (", f,
                 " is missing)");
  model.load_state_tensors(io::load_safetensors((ckpt / "model.safetensors").string()),
                           (ckpt / "model.safetensors").string());
  try {
    std::ifstream in(ckpt / "optimizer.pt", std::ios::binary);
    torch::load(optimizer, in);
  } catch (const c10::Error& e) {
    throw UserError((ckpt / "optimizer.pt").string() + ": cannot restore the optimizer state (" +
                    e.what_without_backtrace() +
                    "); a checkpoint restores only into the optimizer that wrote it: the same "
                    "optimizer.name, and momentum on or off as it was");
  }
  auto rng = io::load_safetensors((ckpt / "state.safetensors").string());
  SCULPT_CHECK(rng.size() == 1 && rng[0].first == "rng.cpu", (ckpt / "state.safetensors").string(),
               ": no 'rng.cpu' tensor");
  set_cpu_rng_state(rng[0].second);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(io::read_file((ckpt / "trainer.json").string()));
    TrainState s;
    s.step = j.at("step");
    s.epoch = j.at("epoch");
    s.batch_in_epoch = j.at("batch_in_epoch");
    s.best_metric = j.at("best_metric");
    s.has_best = j.at("has_best");
    s.evals_since_best = j.value("evals_since_best", int64_t{0});
    s.config_hash = j.at("config_hash");
    s.world_size = j.value("world_size", int64_t{1});
    return s;
  } catch (const nlohmann::json::exception& e) {
    throw UserError((ckpt / "trainer.json").string() + ": malformed (" + e.what() + ")");
  }
}

std::optional<fs::path> resolve_resume(const std::string& resume, const fs::path& run_dir) {
  if (resume.empty()) return std::nullopt;
  if (resume == "auto") return CheckpointStore(run_dir, 1).latest();
  fs::path p(resume);
  SCULPT_CHECK(fs::exists(p), "run.resume: ", resume, " does not exist");
  if (fs::exists(p / "trainer.json")) return p;
  for (const fs::path& d : {p, p / "checkpoints"}) {
    if (fs::exists(d / "latest")) {
      auto latest =
          CheckpointStore(d.filename() == "checkpoints" ? d.parent_path() : d, 1).latest();
      if (latest) return latest;
    }
  }
  throw UserError(
      "run.resume: " + resume +
      " is neither a checkpoint folder (with trainer.json) nor a run directory with checkpoints");
}

}  // namespace sculpt
