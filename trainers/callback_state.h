// Callback state in checkpoints: callbacks.safetensors (tensors named "<index>.<pass>/<name>")
// and callbacks.json ([{name, state}] in recipe order) beside the model's weights.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>

#include "trainers/callback.h"

namespace sculpt::trainers {

void save_callback_states(const Callbacks& callbacks, const std::filesystem::path& dir);
// UserError naming the file when the checkpoint's recipe differs from `callbacks`.
void load_callback_states(const Callbacks& callbacks, const std::filesystem::path& dir);

}  // namespace sculpt::trainers
