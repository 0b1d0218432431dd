// The plugin loader. Handles are never closed: a loaded plugin's code backs the factories,
// vtables and options types it registered, which live as long as the registry (the process).
#include "compression/plugin.h"

#include <dlfcn.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <mutex>

#include "core/config/node.h"
#include "core/error.h"
#include "core/logging/logging.h"

namespace sculpt::compression {

namespace fs = std::filesystem;

namespace {

struct Loaded {
  std::vector<std::string> passes;  // what its register function added
};

std::mutex& plugins_mutex() {
  static std::mutex m;
  return m;
}
// Canonical path -> what it registered.
std::map<std::string, Loaded>& loaded_plugins() {
  static std::map<std::string, Loaded> plugins;
  return plugins;
}

std::string dl_error() {
  const char* e = dlerror();
  return e ? e : "unknown dlopen error";
}

// "pass 'x' is already registered" (RegistryBase::add_info) -> "x"; "" for other messages.
std::string duplicate_name(const std::string& message) {
  const std::string tail = "' is already registered";
  const auto end = message.rfind(tail);
  if (end == std::string::npos) return "";
  const auto begin = message.rfind('\'', end - 1);
  return begin == std::string::npos ? "" : message.substr(begin + 1, end - begin - 1);
}

// Who registered pass `name`: "plugin <file>", or "a built-in pass".
std::string owner_of(const std::string& name) {
  for (const auto& [file, plugin] : loaded_plugins())
    if (std::count(plugin.passes.begin(), plugin.passes.end(), name)) return "plugin " + file;
  return "Sculpt itself (a built-in pass)";
}

// Before registration nothing of the library is in use: it can be unloaded again.
[[noreturn]] void reject(void* handle, const std::string& file, const std::string& why) {
  dlclose(handle);
  throw UserError("plugin " + file + ": " + why);
}

}  // namespace

std::vector<std::string> load_plugin(const std::string& path) {
  std::error_code ec;
  SCULPT_CHECK(fs::exists(path, ec), "plugin ", path, ": no such file");
  SCULPT_CHECK(fs::is_regular_file(path, ec), "plugin ", path,
               ": not a file (expected a shared library, e.g. libmy_pass.so)");
  const std::string file = fs::canonical(path).string();

  std::lock_guard<std::mutex> lock(plugins_mutex());
  if (auto it = loaded_plugins().find(file); it != loaded_plugins().end()) return it->second.passes;

  void* handle = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  SCULPT_CHECK(handle, "plugin ", file, ": not a loadable shared library: ", dl_error());
  auto entry_point = [&](const char* symbol) {
    dlerror();
    void* found = dlsym(handle, symbol);
    if (!found)
      reject(handle, file,
             std::string("missing entry point ") + symbol +
                 "; define the entry points with SCULPT_PLUGIN(register_fn) from "
                 "compression/plugin.h");
    return found;
  };
  void* version_sym = entry_point(kPluginVersionSymbol);
  void* register_sym = entry_point(kPluginRegisterSymbol);
  const int version = reinterpret_cast<int (*)()>(version_sym)();
  if (version != SCULPT_PASS_API_VERSION)
    reject(handle, file,
           "built for pass API version " + std::to_string(version) + ", but this Sculpt has pass " +
               "API version " + std::to_string(SCULPT_PASS_API_VERSION) +
               "; rebuild the plugin against this Sculpt's installed SDK");

  // From here on the library stays loaded, even on error: it may have registered passes.
  auto& registry = pass_registry();
  const auto before = registry.names();
  try {
    reinterpret_cast<void (*)(PassRegistry&)>(register_sym)(registry);
  } catch (const UserError& e) {
    const std::string name = duplicate_name(e.what());
    if (name.empty()) throw UserError("plugin " + file + ": " + e.what());
    const bool own = !std::binary_search(before.begin(), before.end(), name);
    throw UserError("plugin " + file + ": cannot register pass '" + name +
                    "': that name is already registered by " +
                    (own ? "this plugin (it adds the name twice)" : owner_of(name)) +
                    "; rename the pass or load only one of the two");
  }
  Loaded plugin;
  for (const auto& name : registry.names())
    if (!std::binary_search(before.begin(), before.end(), name)) plugin.passes.push_back(name);
  std::string names;
  for (const auto& n : plugin.passes) names += (names.empty() ? "" : ", ") + n;
  log::debug("plugin ", file, ": registered passes: ", names.empty() ? "(none)" : names);
  return loaded_plugins().emplace(file, std::move(plugin)).first->second.passes;
}

void load_config_plugins(const std::vector<std::string>& cli_paths, const std::string& config_path,
                         const std::vector<std::string>& overrides) {
  for (const auto& p : cli_paths) load_plugin(p);
  if (config_path.empty()) return;
  config::Node root = config::load_with_extends(config_path);
  config::apply_overrides(root, overrides);
  const config::Node* list = root.is_map() ? root.find("plugins") : nullptr;
  if (!list || list->kind != config::Node::Kind::Sequence) return;
  for (size_t i = 0; i < list->seq.size(); ++i) {
    const auto& item = list->seq[i];
    if (item.kind != config::Node::Kind::Scalar) continue;
    fs::path p = item.scalar;
    // Overrides have no file: their paths are relative to the working directory.
    if (p.is_relative() && !item.source.file.empty() && fs::exists(item.source.file))
      p = fs::path(item.source.file).parent_path() / p;
    try {
      load_plugin(p.lexically_normal().string());
    } catch (const UserError& e) {
      throw UserError(item.source.str() + ": plugins[" + std::to_string(i) + "]: " + e.what());
    }
  }
}

}  // namespace sculpt::compression
