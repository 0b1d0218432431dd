// The compression family's registration list. The CompressionPass API and the built-in passes
// (distill, quantize, prune, continual, lowrank) arrive with their issues; until then this
// library only anchors the layering core <- trainers <- compression <- cli.
#pragma once

namespace sculpt::compression {
void register_compression_builtins();
}  // namespace sculpt::compression
