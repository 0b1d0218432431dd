// One item of `increments:` as the incremental trainer and `sculpt versions diff` see it: its
// data, the dataset its metric is measured on (a slice of the accuracy matrix) and, for a
// task-incremental run, the classes it keeps. Both build slices here, so an A/B report of two
// versions measures exactly what the run measured.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "core/config/config.h"
#include "core/data/dataset.h"
#include "core/models/model.h"
#include "core/run/collectives.h"
#include "core/tasks/task.h"
#include "trainers/run_parts.h"

namespace sculpt::trainers {

struct Increment {
  std::string name;
  std::string spec;                     // the increment's resolved YAML (checked on resume_from)
  config::DataConfig data;              // the run's data keys with this increment's dataset
  at::Tensor mask;                      // task_incremental: bool [classes], true for its classes
  std::unique_ptr<data::Dataset> eval;  // what R[.][i] is measured on
  // A retrieval increment whose corpus (ID trie) is not the run data's (other `updates`,
  // removed_docs, ...): the task decoding with its own ID trie. Null: the run's task.
  std::unique_ptr<tasks::Task> task;
};

// The run's data keys with increment i's dataset (`increments[i].data`, when it names one).
config::DataConfig increment_data(const config::Config& c, int64_t i);

// Increment i of `c` (its slice built from the run's parts or its own dataset).
Increment make_increment(const config::Config& c, const RunParts& parts, int64_t i);

// Increment i's data, split into train and val as data.val_fraction says.
data::Split increment_split(const config::Config& c, const RunParts& parts, int64_t i);

// The logit mask of a task-incremental increment (classes outside it at -1e9); empty otherwise.
std::function<at::Tensor(const at::Tensor&)> increment_output_map(const Increment& inc);

// `metric` of `model` on the increment's slice (its own task when it has one).
double measure_increment(models::Model& model, const tasks::Task& task, const Increment& inc,
                         const std::string& metric, c10::Device device, bool bf16,
                         Collectives* comm = nullptr);

// Whether a metric is a proportion (a Wilson interval applies).
bool is_proportion(const std::string& metric);

// One slice's record: the metric, its number of queries (test rows) and, for a proportion,
// the 95% Wilson interval (lo, hi).
nlohmann::json slice_json(const std::string& name, double value, int64_t n,
                          const std::string& metric);

}  // namespace sculpt::trainers
