// Builds one part of a dataset from a `data:` YAML map, as a run does (test helper).
#pragma once

#include <exception>
#include <memory>
#include <string>

#include "cli/app.h"
#include "core/config/config.h"
#include "core/data/dataset.h"

namespace sculpt::test {

// A small gr_synthetic corpus the GR unit tests share; a test closes the map after adding keys.
inline const std::string kSmallGr =
    "{name: gr_synthetic, docs: 120, new_docs: 12, topics: 6, vocab: 300, doc_len: 16, "
    "query_len: 8, id_branch: 8, id_reserve: 0.25, id_dims: 0, seed: 3";

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
