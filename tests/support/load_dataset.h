// Builds one part of a dataset from a `data:` YAML map, as a run does (test helper).
#pragma once

#include <exception>
#include <memory>
#include <string>

#include "cli/app.h"
#include "core/config/config.h"
#include "core/data/dataset.h"

namespace sculpt::test {

inline std::unique_ptr<data::Dataset> load_dataset(const std::string& data_yaml,
                                                   data::DataPart part) {
  cli::register_builtins();
  auto cfg = config::Config::parse("model: {name: mlp}\ndata: " + data_yaml + "\n");
  return data::dataset_registry().create(cfg.data.name, cfg.data, part);
}

// The message of the error that loading `data_yaml` throws, or "no error".
inline std::string load_error(const std::string& data_yaml,
                              data::DataPart part = data::DataPart::train) {
  try {
    load_dataset(data_yaml, part);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace sculpt::test
