// Checkpoints: one folder per save under <run>/checkpoints/step_<N>/ holding
//   model.safetensors  weights (readable by Python's safetensors)
//   optimizer.pt       the optimizer's state (torch::save archive)
//   state.safetensors  RNG state of torch's CPU generator
//   trainer.json       step, epoch, batch position in the epoch, best metric, config hash
//   manifest.json      every other file's size and CRC-32, checked on resume: a corrupt or
//                      partial newest checkpoint is skipped for the newest one that verifies
// The folder is written as step_<N>.tmp, fsynced and renamed, then the `latest` pointer file is
// replaced atomically: a crash leaves the previous checkpoint intact. The last K are kept, plus
// the best one (pointer file `best`).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

namespace torch::optim {
class Optimizer;
}

namespace sculpt {
namespace models {
class Model;
}

struct TrainState {
  int64_t step = 0;            // optimizer steps done
  int64_t epoch = 0;           // current epoch
  int64_t batch_in_epoch = 0;  // batches of `epoch` already consumed
  double best_metric = 0;      // best value of the tracked metric so far
  bool has_best = false;
  int64_t evals_since_best = 0;  // for trainer.early_stopping
  std::string config_hash;
  int64_t world_size = 1;  // ranks that wrote it (batch_in_epoch counts per-rank batches)
};

class CheckpointStore {
 public:
  // `run_dir`/checkpoints; keeps the newest `keep_last` (>= 1) plus the best.
  CheckpointStore(const std::filesystem::path& run_dir, int64_t keep_last);

  // Saves and returns the checkpoint folder. `is_best` moves the `best` pointer to it.
  // `extra` writes more files (callback state) into the folder before it is renamed into place.
  // A failed write (a full disk) removes the half-written folder and throws std::runtime_error
  // naming it, the cause and the previous checkpoint, which is left as it was.
  std::filesystem::path save(
      models::Model& model, torch::optim::Optimizer& optimizer, const TrainState& state,
      bool is_best, const std::function<void(const std::filesystem::path&)>& extra = {});

  // The folder `latest` points to, if any.
  std::optional<std::filesystem::path> latest() const;

  // Restores model, optimizer, RNG and returns the trainer state. UserError naming the folder
  // (and file, and tensor) when something is missing, truncated or from another model.
  static TrainState load(const std::filesystem::path& checkpoint, models::Model& model,
                         torch::optim::Optimizer& optimizer);

 private:
  static void write_into(const std::filesystem::path& tmp, models::Model& model,
                         torch::optim::Optimizer& optimizer, const TrainState& state,
                         const std::function<void(const std::filesystem::path&)>& extra);
  // Keeps the newest keep_last plus `keep_best`; removes the step_N.tmp folders a process
  // killed while saving left behind (each run directory has one writer).
  void prune(const std::string& keep_best) const;
  std::filesystem::path dir_;
  int64_t keep_last_;
};

// "" when the checkpoint's files match its manifest.json (sizes and CRC-32; a folder from before
// manifests has none and passes); otherwise what is wrong, naming the file.
std::string verify_checkpoint(const std::filesystem::path& checkpoint);

// run.resume: "" (fresh), "auto" (latest of this run, else fresh) or a checkpoint folder
// (a run directory works too: its latest). Throws UserError when a given path has nothing.
std::optional<std::filesystem::path> resolve_resume(const std::string& resume,
                                                    const std::filesystem::path& run_dir);

}  // namespace sculpt
