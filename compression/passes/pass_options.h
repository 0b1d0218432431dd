// Helpers of the built-in passes: the pass-wide options as their type, and the weights (and
// biases) of the chosen layers with each layer's options.
#pragma once

#include "compression/pass.h"

namespace sculpt::compression {

// The pass-wide options (its own keys beside `name`) as type T; T's defaults when there are none.
template <class T>
const T& pass_options(const CompressionPass& pass) {
  static const T defaults;
  const auto* o = dynamic_cast<const T*>(pass.config().options.get());
  return o ? *o : defaults;
}

// Calls fn(target, "<layer>.weight", weight, options) for every layer `pass` selects in `model`,
// and fn(target, "<layer>.bias", bias, options) too when the layer's options.include_bias.
template <class T, class Fn>
void for_each_weight(const CompressionPass& pass, torch::nn::Module& model, Fn fn) {
  static const T defaults;
  for (const auto& t : pass.select_layers(model)) {
    const T& o = t.options ? CompressionPass::options_of<T>(t) : defaults;
    fn(t, t.name + ".weight", t.layer->raw_weight(), o);
    if (o.include_bias && t.layer->bias().defined()) fn(t, t.name + ".bias", t.layer->bias(), o);
  }
}

}  // namespace sculpt::compression
