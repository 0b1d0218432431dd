#include "core/builtins.h"
#include "cli/app.h"
#include "compression/compression.h"
#include "trainers/trainer.h"

namespace sculpt::cli {

void register_builtins() {
  static const bool kRegistered = [] {
    register_core_builtins();
    trainers::register_builtin_trainers(trainers::trainer_registry());
    compression::register_compression_builtins();
    return true;
  }();
  (void)kRegistered;
}

}  // namespace sculpt::cli
