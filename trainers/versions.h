// Model versions (issue 27, part 3; docs/versions.md): a version store is a folder with one
// subfolder per version, v<id>/, each holding version.json (id, parent, date, what changed, the
// config and its hash, metrics per slice, the tensors' and files' sha256) and a safetensors file:
// the full model state for a base version (weights.safetensors), otherwise only the tensors that
// differ from the parent's, bit for bit (delta.safetensors). During an update with LoRA adapters
// (the lora pass, not yet merged) the base weights are frozen, so the delta is the adapters and
// whatever else trained. `current` names the version a rollback made current; a new version's
// parent is the current one. Versions are written atomically (a temporary folder, then a rename)
// and every read checks the checksums first: a file changed by hand is named, nothing is written.
// Each version records its data's tokenizer and ID scheme (data_fingerprint.h); a version whose
// fingerprint differs from its parent's is refused. The A/B measurement of `diff` is
// versions_ab.h; the CLI's actions are versions_actions.cpp.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/io/safetensors.h"
#include "trainers/callback.h"
#include "trainers/sha256.h"

namespace sculpt::models {
class Model;
}

namespace sculpt::trainers::versions {

using trainers::sha256_file;
using trainers::sha256_hex;
using trainers::sha256_tensor;

// What a new version is made of.
struct NewVersion {
  io::NamedTensors state;                        // the model's state tensors (raw: adapters apart)
  std::map<std::string, double> adapter_scale;   // layer -> alpha / rank of its LoRA adapter
  nlohmann::json changes = nlohmann::json::object();  // documents_added, documents_removed, ...
  nlohmann::json metrics = nlohmann::json::object();  // headline, metric, slices
  nlohmann::json source = nlohmann::json::object();   // run, increment
  nlohmann::json data;  // tokenizer and ID scheme (data_fingerprint); null: not known
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
  // returns its id and makes it current. UserError, nothing written, when v.data's tokenizer or
  // ID scheme differs from the parent's.
  int64_t add(const NewVersion& v);
  void set_current(int64_t id);
  std::string path_of(int64_t id) const;

 private:
  void check_files(int64_t id, const nlohmann::json& info) const;
  std::string dir_;
};

// Bit-identical tensors (dtype, shape and bytes).
bool same_bits(const at::Tensor& a, const at::Tensor& b);
int64_t bytes_of(const io::NamedTensors& ts);
std::string now_utc();  // 2025-01-31T12:00:00Z

// The `sculpt versions` actions (versions_actions.cpp): text on stdout.
std::string list_text(const Store& s);
std::string show_text(const Store& s, int64_t id);
// What `diff A B` compares from the records: the tensors that differ (max |b - a|), both
// versions' sizes, their recorded per-slice metrics and whether their configs differ.
nlohmann::json diff_json(const Store& s, int64_t a, int64_t b);
// diff_json as text, with the A/B measurement (versions_ab.h) when `diff` holds one ("ab").
std::string diff_text(const nlohmann::json& diff);
// Writes version `id`'s weights (model.safetensors), its config (config.yaml) and
// version.json into `out` (default <store>/rollback/v<id>) and makes it current; returns `out`.
std::string rollback(Store& s, int64_t id, std::string out);
// Records a finished run (its model.safetensors, config.yaml, summary.json) as a new version.
int64_t add_run(Store& s, const std::string& run_dir);

}  // namespace sculpt::trainers::versions
