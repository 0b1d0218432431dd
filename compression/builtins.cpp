#include "compression/compression.h"
#include "compression/pass.h"

namespace sculpt::compression {

void register_builtin_passes(PassRegistry& /*r*/) {
  // Built-in passes are added here, one line each, as they land.
}

void register_compression_builtins() {
  register_builtin_passes(pass_registry());
}

}  // namespace sculpt::compression
