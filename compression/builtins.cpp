#include "compression/compression.h"
#include "compression/pass.h"
#include "compression/passes/distill.h"

namespace sculpt::compression {

void register_builtin_passes(PassRegistry& r) {
  add_distill(r);
}

void register_compression_builtins() {
  register_builtin_passes(pass_registry());
}

}  // namespace sculpt::compression
