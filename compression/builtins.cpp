#include "compression/compression.h"

namespace sculpt::compression {

// No built-in passes yet: the pass registry is created with the pass API (issue 4).
void register_compression_builtins() {}

}  // namespace sculpt::compression
