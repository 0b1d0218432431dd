// Model versions (issue 27, part 3; docs/versions.md): a version store is a folder with one
// subfolder per version, v<id>/, each holding version.json (id, parent, date, what changed, the
// config and its hash, metrics per slice, the tensors' and files' sha256) and a safetensors file:
// the full model state for a base version (weights.safetensors), otherwise only the tensors that
// differ from the parent's, bit for bit (delta.safetensors). During an update with LoRA adapters
// (the lora pass, not yet merged) the base weights are frozen, so the delta is the adapters and
// whatever else trained. `current` names the version a rollback made current; a new version's
// parent is the current one. Versions are written atomically (a temporary folder, then a rename)
// and every read checks the checksums first: a file changed by hand is named, nothing is written.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/io/safetensors.h"
#include "trainers/callback.h"

namespace sculpt::models {
class Model;
}

namespace sculpt::trainers::versions {

// SHA-256 of bytes, as 64 lowercase hex digits.
std::string sha256_hex(const void* data, size_t size);
std::string sha256_file(const std::string& path);
// Of a tensor's bytes (CPU, contiguous, its own dtype).
std::string sha256_tensor(const at::Tensor& t);

// What a new version is made of.
struct NewVersion {
  io::NamedTensors state;                        // the model's state tensors (raw: adapters apart)
  std::map<std::string, double> adapter_scale;   // layer -> alpha / rank of its LoRA adapter
  nlohmann::json changes = nlohmann::json::object();  // documents_added, documents_removed, ...
  nlohmann::json metrics = nlohmann::json::object();  // headline, metric, slices
  nlohmann::json source = nlohmann::json::object();   // run, increment
  std::string config_yaml, config_hash;
};

// The model's state and the scales of the LoRA adapters it holds (from the lora passes'
// summaries among `callbacks`).
NewVersion capture(models::Model& model, const Callbacks& callbacks);

class Store {
 public:
  explicit Store(std::string dir);
  const std::string& dir() const { return dir_; }
  std::vector<int64_t> ids() const;  // ascending
  bool empty() const { return ids().empty(); }
  // The current version: `current` when written, else the newest; 0 when the store is empty.
  int64_t current() const;
  // version.json of `id`, its own checksum checked. UserError listing the known versions when
  // `id` is not in the store.
  nlohmann::json info(int64_t id) const;
  // The full state of `id`: the base's weights, then each delta along the parent chain; every
  // file's and the result's checksums checked.
  io::NamedTensors state(int64_t id) const;
  // state(id) with LoRA adapters merged into their layers' weights (what `sculpt eval` loads).
  io::NamedTensors weights(int64_t id) const;
  // Writes the next version, its parent the current one (none: a base with the full state);
  // returns its id and makes it current.
  int64_t add(const NewVersion& v);
  void set_current(int64_t id);
  std::string path_of(int64_t id) const;

 private:
  void check_files(int64_t id, const nlohmann::json& info) const;
  std::string dir_;
};

// The `sculpt versions` actions: text on stdout.
std::string list_text(const Store& s);
std::string show_text(const Store& s, int64_t id);
std::string diff_text(const Store& s, int64_t a, int64_t b);
// Writes version `id`'s weights (model.safetensors), its config (config.yaml) and
// version.json into `out` (default <store>/rollback/v<id>) and makes it current; returns `out`.
std::string rollback(Store& s, int64_t id, std::string out);
// Records a finished run (its model.safetensors, config.yaml, summary.json) as a new version.
int64_t add_run(Store& s, const std::string& run_dir);

}  // namespace sculpt::trainers::versions
