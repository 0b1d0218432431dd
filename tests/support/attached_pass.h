// Unit tests of a pass without a trainer: the first pass of a config's recipe, attached to the
// config's model (CPU) with a StepContext that holds only the run's task (no run, no optimizer).
#pragma once

#include "compression/pass.h"
#include "core/config/config.h"
#include "core/tasks/task.h"
#include "trainers/run_parts.h"

namespace sculpt::test {

struct AttachedPass {
  trainers::RunParts parts;
  trainers::Callbacks recipe;
  trainers::StepContext ctx;
  models::Model& model() { return *parts.model; }
  trainers::Callback& pass() { return *recipe[0]; }
};

// The registered task `name` for data described by `spec` (default options).
inline std::shared_ptr<const tasks::Task> make_task(const std::string& name,
                                                    const data::DataSpec& spec) {
  config::TaskConfig c;
  c.name = name;
  return tasks::task_registry().create(name, c, spec);
}

inline AttachedPass attach_first_pass(const config::Config& cfg) {
  AttachedPass a{trainers::build_run_parts(cfg, c10::Device(c10::kCPU)),
                 compression::build_recipe(cfg), {}};
  a.ctx.task = make_task(cfg.task.name, a.parts.split.train.spec());
  a.pass().attach(a.model(), a.ctx);
  return a;
}

}  // namespace sculpt::test
