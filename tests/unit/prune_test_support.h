// Helpers of the prune unit tests (test_prune.cpp, test_prune_removal.cpp): models and specs
// from configs, and a recipe's single pass.
#pragma once

#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "cli/app.h"
#include "compression/pass.h"
#include "core/config/config.h"
#include "core/data/dataset.h"
#include "core/models/model.h"

namespace sculpt::test {
using sculpt::config::Config;

inline std::unique_ptr<sculpt::models::Model> model_for(const Config& cfg,
                                                 const sculpt::data::DataSpec& spec) {
  return sculpt::models::model_registry().create(cfg.model.name, cfg.model, spec);
}

inline sculpt::data::DataSpec spec_of(std::vector<int64_t> input_shape, int64_t classes) {
  sculpt::data::DataSpec spec;
  spec.input_shape = std::move(input_shape);
  spec.num_classes = classes;
  return spec;
}
inline sculpt::data::DataSpec blobs_spec() { return spec_of({8}, 3); }

// The config of `yaml`, with the built-ins registered and torch's RNG at `seed`.
inline Config seeded(uint64_t seed, const std::string& yaml) {
  sculpt::cli::register_builtins();
  torch::manual_seed(seed);
  return Config::parse(yaml);
}

inline std::shared_ptr<sculpt::trainers::Callback> the_pass(const Config& cfg) {
  auto recipe = sculpt::compression::build_recipe(cfg);
  REQUIRE(recipe.size() == 1);
  return recipe[0];
}

}  // namespace sculpt::test
