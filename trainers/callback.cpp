#include "trainers/callback_state.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/safetensors.h"

namespace fs = std::filesystem;

namespace sculpt::trainers {

namespace {
std::string prefix_of(size_t i, const Callback& cb) {
  return std::to_string(i) + "." + cb.name() + "/";
}
}  // namespace

void save_callback_states(const Callbacks& callbacks, const fs::path& dir) {
  if (callbacks.empty()) return;
  io::NamedTensors tensors;
  nlohmann::json meta = nlohmann::json::array();
  for (size_t i = 0; i < callbacks.size(); ++i) {
    auto state = callbacks[i]->state_dict();
    for (auto& [name, t] : state.tensors)
      tensors.emplace_back(prefix_of(i, *callbacks[i]) + name, t.detach().to(at::kCPU));
    meta.push_back({{"name", callbacks[i]->name()}, {"state", state.meta}});
  }
  io::save_safetensors((dir / "callbacks.safetensors").string(), tensors);
  io::write_file_atomic((dir / "callbacks.json").string(), meta.dump(2) + "\n");
}


void load_callback_states(const Callbacks& callbacks, const fs::path& dir) {
  if (callbacks.empty()) return;
  const fs::path json_path = dir / "callbacks.json", tensor_path = dir / "callbacks.safetensors";
  SCULPT_CHECK(fs::exists(json_path) && fs::exists(tensor_path), dir.string(),
               ": no compression state (callbacks.json); it was written by a run with another "
               "recipe");
  const nlohmann::json meta = io::read_json_file(json_path.string());
  SCULPT_CHECK(meta.is_array() && meta.size() == callbacks.size(), json_path.string(),
               ": holds the state of ", meta.is_array() ? meta.size() : 0,
               " passes, the recipe has ", callbacks.size());
  const auto tensors = io::load_safetensors(tensor_path.string());
  for (size_t i = 0; i < callbacks.size(); ++i) {
    const std::string name = meta[i].value("name", "");
    SCULPT_CHECK(name == callbacks[i]->name(), json_path.string(), ": pass ", i, " is '", name,
                 "', the recipe has '", callbacks[i]->name(), "' there");
    CallbackState state;
    state.meta = meta[i].value("state", nlohmann::json::object());
    const std::string prefix = prefix_of(i, *callbacks[i]);
    for (const auto& [key, t] : tensors)
      if (key.rfind(prefix, 0) == 0) state.tensors.emplace_back(key.substr(prefix.size()), t);
    callbacks[i]->load_state_dict(state);
  }
}

}  // namespace sculpt::trainers
