// Unit tests of a pass without a trainer: the first pass of a config's recipe, attached to the
// config's model (CPU) with an empty StepContext.
#pragma once

#include "compression/pass.h"
#include "core/config/config.h"
#include "trainers/run_parts.h"

namespace sculpt::test {

struct AttachedPass {
  trainers::RunParts parts;
  trainers::Callbacks recipe;
  trainers::StepContext ctx;
  models::Model& model() { return *parts.model; }
  trainers::Callback& pass() { return *recipe[0]; }
};

inline AttachedPass attach_first_pass(const config::Config& cfg) {
  AttachedPass a{trainers::build_run_parts(cfg, c10::Device(c10::kCPU)),
                 compression::build_recipe(cfg), {}};
  a.pass().attach(a.model(), a.ctx);
  return a;
}

}  // namespace sculpt::test
