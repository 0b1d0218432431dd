// The compression family's registration list: the built-in passes (compression/passes/),
// registered by register_builtin_passes() in builtins.cpp. More (distill, quantize, prune,
// continual, lowrank) arrive with their issues.
#pragma once

namespace sculpt::compression {
void register_compression_builtins();
}  // namespace sculpt::compression
