// lwf: Learning without Forgetting (Li & Hoiem 2016) for continual learning: during every
// increment after the first, the outputs of the model as it was at the start of the increment
// (a frozen copy taken at the end of the previous one) are distilled into the model being
// trained, with the distillation pass's KD loss: alpha * tau^2 KL(softmax(t/tau) || softmax(s/tau)).
#pragma once

#include <memory>

#include "compression/pass.h"

namespace sculpt::compression {

struct LwfOptions : config::WholeModelOptions {
  double alpha = 1.0;  // weight of the KD term, >= 0
  double tau = 2.0;    // softmax temperature, > 0
  void visit(config::Visitor& v) override;
};

std::unique_ptr<CompressionPass> make_lwf_pass(const config::PassConfig& cfg);

}  // namespace sculpt::compression
