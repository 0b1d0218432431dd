// Exported runtimes at inference. A pass whose finalize hands layers to a LayerRuntime (the
// block-sparse GEMM of pruning; int8 GEMM of quantization) also implements RuntimeProvider, so
// that `sculpt eval` puts the same runtimes on a model loaded from the run's weights file (the
// weights file holds plain dense tensors; the runtime is rebuilt from them). Kept out of pass.h,
// so the plugin API does not change: a plugin pass may implement it too.
#pragma once

#include "core/config/config.h"

namespace sculpt::models {
class Model;
}

namespace sculpt::compression {

class RuntimeProvider {
 public:
  virtual ~RuntimeProvider() = default;
  // Installs runtimes on the chosen layers of a model with trained (final) weights.
  virtual void install_runtimes(models::Model& model) = 0;
};

// Calls install_runtimes of every pass of cfg's recipe that provides runtimes.
void install_runtimes(const config::Config& cfg, models::Model& model);

}  // namespace sculpt::compression
