// The compression pass API (DESIGN.md §5): a CompressionPass is a trainer Callback that acts on
// chosen layers of the model. A pass is built from its PassConfig (name, include/exclude layer
// patterns, per-layer overrides, its own keys) and registered by name in the "passes" family.
// Stable surface for plugins: bump SCULPT_PASS_API_VERSION on any change to this header.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/config/config.h"
#include "core/nn/layers.h"
#include "core/registry/registry.h"
#include "trainers/callback.h"

#define SCULPT_PASS_API_VERSION 4

namespace sculpt::compression {

using trainers::CallbackState;
using trainers::StepContext;

// A layer a pass acts on, with the options that apply to it (the pass's own, or the first
// matching override's).
struct Target {
  std::string name;  // dotted layer name, e.g. "layer0.layer.fc1"
  std::shared_ptr<nn::Compressible> layer;
  const config::Section* options = nullptr;  // null when the pass has no options
};

class CompressionPass : public trainers::Callback {
 public:
  explicit CompressionPass(const config::PassConfig& cfg);
  std::string name() const override { return cfg_.name; }
  const config::PassConfig& config() const { return cfg_; }

  // The compressible layers of `model` this pass acts on: include minus exclude (every layer
  // when include is empty). A pattern matching no layer is a warning naming it and listing
  // the layers, or a UserError when `strict`. Regexes match the whole layer name.
  std::vector<Target> select_layers(torch::nn::Module& model) const;
  // The pass's options for one target, as type T (the type its registry entry creates).
  template <class T>
  static const T& options_of(const Target& t) {
    return dynamic_cast<const T&>(*t.options);
  }

  // Names of passes this one cannot share a recipe with (the error names both).
  virtual std::vector<std::string> incompatible_with() const { return {}; }
  // One line on what the pass will do to one layer, for `sculpt validate --explain`.
  virtual std::string describe(const Target& target) const;

 private:
  config::PassConfig cfg_;
};

// A point in training, as a pass option gives it (config::StepPoint: "500", "2e", 0.5 of the run),
// as a step of the trainer's run. UserError naming `key` when it cannot be resolved.
inline int64_t resolve_step(const config::StepPoint& point, const StepContext& ctx,
                            const std::string& key) {
  return point.resolve(ctx.total_steps, ctx.steps_per_epoch, key);
}

using PassRegistry = Registry<CompressionPass, const config::PassConfig&>;
PassRegistry& pass_registry();
// Registers pass class P (built from its PassConfig) whose options are an O.
template <class P, class O>
void register_pass(PassRegistry& r, const std::string& name, const std::string& help) {
  r.add(
      name, help,
      [](const config::PassConfig& c) -> std::unique_ptr<CompressionPass> {
        return std::make_unique<P>(c);
      },
      [] { return std::make_shared<O>(); });
}
// The built-in passes, one explicit list (no linker can drop a registration).
void register_builtin_passes(PassRegistry& r);

// The config's `compression:` list as passes, in order. UserError when two passes declare
// each other incompatible.
trainers::Callbacks build_recipe(const config::Config& cfg);

// The per-layer plan of the recipe on the config's model: which pass touches which layer with
// what settings (text for `sculpt validate --explain`).
std::string explain_recipe(const config::Config& cfg);

}  // namespace sculpt::compression
