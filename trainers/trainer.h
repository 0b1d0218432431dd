// Trainers run the loop of a run. The "trainers" family holds them by name (`trainer.name`);
// `standard` is the plain supervised loop. Everything a loop builds comes from the registries
// named in the config; a trainer never parses YAML.
#pragma once

#include <map>
#include <string>

#include "core/config/config.h"
#include "core/registry/registry.h"
#include "core/run/run_context.h"
#include "trainers/callback.h"

namespace sculpt::trainers {

struct FitResult {
  int64_t steps = 0;
  bool interrupted = false;  // stopped by SIGINT/SIGTERM after writing a checkpoint
  double time_s = 0;
  std::map<std::string, std::map<std::string, double>> final_metrics;  // split -> metric -> value
};

class Trainer {
 public:
  virtual ~Trainer() = default;
  // Trains; `callbacks` (the compression recipe, in order) are called at every hook.
  virtual FitResult fit(RunContext& ctx, const Callbacks& callbacks) = 0;
};

using TrainerRegistry = Registry<Trainer, const config::TrainerConfig&>;
TrainerRegistry& trainer_registry();
void register_builtin_trainers(TrainerRegistry& r);
// `incremental` (incremental_trainer.cpp): the loop once per item of `increments:`.
void add_incremental_trainer(TrainerRegistry& r);

}  // namespace sculpt::trainers
