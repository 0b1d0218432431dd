// Out-of-tree passes (DESIGN.md §5). A plugin is a shared library that exports two extern "C"
// entry points, both defined by SCULPT_PLUGIN(fn): the pass API version it was compiled
// against, and a function that adds its passes to the pass registry. `plugins:` in YAML and
// `--plugin` on the command line name such libraries; they are loaded before the config is
// read (the config reader needs each pass's options) and stay loaded until the process exits.
// docs/writing-a-pass.md walks through examples/plugins/.
#pragma once

#include <string>
#include <vector>

#include "compression/pass.h"

namespace sculpt::compression {

inline constexpr const char* kPluginVersionSymbol = "sculpt_pass_api_version";
inline constexpr const char* kPluginRegisterSymbol = "sculpt_register_passes";

// Loads one plugin and runs its register function; returns the names of the passes it added.
// Loading a file that is already loaded (same canonical path) does nothing and returns its
// passes again. UserError naming the file when: it does not exist, dlopen() refuses it (with
// dlerror()'s text), an entry point is missing, its API version differs from
// SCULPT_PASS_API_VERSION (both named), or it registers a pass name that is already taken.
std::vector<std::string> load_plugin(const std::string& path);

// Every plugin a config asks for, in order: `cli_paths` (relative to the working directory),
// then the `plugins:` list of the YAML file `config_path` after `extends:` and `overrides`
// (an entry relative to the directory of the file that names it; relative to the working
// directory when it comes from an override). Entries that are not strings are left to the
// config reader to report.
void load_config_plugins(const std::vector<std::string>& cli_paths, const std::string& config_path,
                         const std::vector<std::string>& overrides);

}  // namespace sculpt::compression

// SCULPT_PLUGIN(fn): the entry points of a plugin; `fn` is a function
// `void fn(sculpt::compression::PassRegistry&)` that adds the plugin's passes. Use it once, in
// one source file of the plugin.
#define SCULPT_PLUGIN(register_fn)                                                  \
  extern "C" __attribute__((visibility("default"))) int sculpt_pass_api_version() { \
    return SCULPT_PASS_API_VERSION;                                                 \
  }                                                                                 \
  extern "C" __attribute__((visibility("default"))) void sculpt_register_passes(    \
      ::sculpt::compression::PassRegistry& registry) {                              \
    register_fn(registry);                                                          \
  }
