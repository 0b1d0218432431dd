// l2sp: regularisation toward the starting point (Li et al. 2018, "Explicit inductive bias for
// transfer learning with convolutional networks"): loss += alpha/2 * sum ||w - w0||^2 over the
// chosen layers, w0 being the weights when training starts.
#pragma once

#include <memory>

#include "compression/pass.h"

namespace sculpt::compression {

struct L2spOptions : config::Section {
  double alpha = 0.01;        // strength of the pull toward the initial weights, >= 0
  bool include_bias = false;  // also pull biases toward their initial values
  void visit(config::Visitor& v) override;
};

std::unique_ptr<CompressionPass> make_l2sp_pass(const config::PassConfig& cfg);

}  // namespace sculpt::compression
