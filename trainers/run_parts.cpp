#include "trainers/run_parts.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <filesystem>
#include <optional>
#include <set>
#include <sstream>

#include "core/data/loader.h"
#include "core/error.h"
#include "core/models/hf/hf_model.h"

namespace sculpt::trainers {
using tasks::Forward;

RunParts build_run_parts(const config::Config& c, c10::Device device) {
  auto all = data::dataset_registry().create(c.data.name, c.data, data::DataPart::train);
  auto split = data::split_dataset(*all, c.data.val_fraction, c.data.split_seed);
  auto model = models::model_registry().create(c.model.name, c.model, all->spec());
  if (!c.model.init.empty() && models::hf::is_checkpoint_dir(c.model.init)) {
    // A Hugging Face folder: its blocks as the whole checkpoint builds them (init_blocks picks).
    const std::string source = "model.init " + c.model.init;
    auto state = models::hf::load_pretrained(c.model.init, all->spec())->state_tensors();
    if (!c.model.init_blocks.empty())
      state = model->pick_blocks(state, c.model.init_blocks, c.source_file + ": " + source);
    model->load_state_tensors(state, source);
  } else if (!c.model.init.empty()) {
    std::filesystem::path init = c.model.init;
    if (std::filesystem::is_directory(init)) init /= "model.safetensors";
    SCULPT_CHECK(std::filesystem::exists(init), c.source_file, ": model.init: ", init.string(),
                 " does not exist (give a .safetensors file, or a run or checkpoint folder "
                 "holding model.safetensors)");
    const std::string source = "model.init " + init.string();
    auto state = io::load_safetensors(init.string());
    if (!c.model.init_blocks.empty())
      state = model->pick_blocks(state, c.model.init_blocks, c.source_file + ": " + source);
    model->load_state_tensors(state, source);
  }
  model->to(device);
  auto task = tasks::task_registry().create(c.task.name, c.task, all->spec());
  auto test = data::dataset_registry().create(c.data.name, c.data, data::DataPart::test);
  return RunParts{std::move(all), std::move(split), std::move(test), std::move(model),
                  std::move(task)};
}

bool use_bf16(config::Precision precision, c10::Device device) {
  return precision == config::Precision::bf16 ||
         (precision == config::Precision::automatic && device.is_cuda());
}

Autocast::Autocast(c10::Device device, bool enabled) : type_(device.type()), enabled_(enabled) {
  if (!enabled_) return;
  was_enabled_ = at::autocast::is_autocast_enabled(type_);
  was_dtype_ = at::autocast::get_autocast_dtype(type_);
  at::autocast::set_autocast_enabled(type_, true);
  at::autocast::set_autocast_dtype(type_, at::kBFloat16);
  at::autocast::increment_nesting();
}

Autocast::~Autocast() {
  if (!enabled_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(type_, was_enabled_);
  at::autocast::set_autocast_dtype(type_, was_dtype_);
}

std::map<std::string, double> evaluate(
    models::Model& model, const tasks::Task& task, const data::Dataset& ds,
    const config::DataConfig& data, c10::Device device, bool bf16,
    const std::function<at::Tensor(const at::Tensor&)>& map_outputs, Collectives* comm) {
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const bool sharded = comm && comm->distributed();
  std::optional<data::Dataset> shard;
  if (sharded)
    shard = ds.subset(at::arange(comm->rank(), ds.size(), comm->world_size(), at::kLong));
  data::Loader loader(sharded ? *shard : ds, data.batch_size,
                      data::LoaderOptions::for_evaluation(data));
  tasks::MetricSums sums;
  data::Batch b;
  const Forward forward = [&](const at::Tensor& x) {
    Autocast autocast(device, bf16);
    auto out = model.forward(x).to(at::kFloat);
    return map_outputs ? map_outputs(out) : out;
  };
  while (loader.next(b)) task.evaluate_batch(sums, forward, b.inputs.to(device), b.targets.to(device));
  model.train(was_training);
  if (sharded) all_reduce_sums(sums, *comm);
  return task.finish(sums);
}

void all_reduce_sums(tasks::MetricSums& sums, Collectives& comm) {
  std::string mine;
  for (const auto& [key, value] : sums) mine += key + "\n";
  std::set<std::string> keys;
  for (const auto& theirs : comm.all_gather(mine, "the evaluation metric names")) {
    std::istringstream in(theirs);
    for (std::string key; std::getline(in, key);) keys.insert(key);
  }
  if (keys.empty()) return;  // nothing evaluated on any rank
  std::vector<double> values;
  for (const auto& key : keys) values.push_back(sums.count(key) ? sums.at(key) : 0.0);
  auto t = at::tensor(values, at::kDouble);
  comm.all_reduce(t, ReduceOp::sum, "the evaluation metric sums");
  const double* sum = t.data_ptr<double>();
  size_t k = 0;
  for (const auto& key : keys) sums[key] = sum[k++];
}

}  // namespace sculpt::trainers
