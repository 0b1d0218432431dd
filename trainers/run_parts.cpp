#include "trainers/run_parts.h"

#include <torch/torch.h>

#include "core/data/loader.h"
#include "core/error.h"

namespace sculpt::trainers {

RunParts build_run_parts(const config::Config& c, c10::Device device) {
  auto all = data::dataset_registry().create(c.data.name, c.data, data::DataPart::train);
  auto split = data::split_dataset(*all, c.data.val_fraction, c.data.split_seed);
  auto model = models::model_registry().create(c.model.name, c.model, all->spec());
  model->to(device);
  auto task = tasks::task_registry().create(c.task.name, c.task, all->spec());
  auto test = data::dataset_registry().create(c.data.name, c.data, data::DataPart::test);
  return RunParts{std::move(all), std::move(split), std::move(test), std::move(model),
                  std::move(task)};
}

std::map<std::string, double> evaluate(models::Model& model, const tasks::Task& task,
                                       const data::Dataset& ds, const config::DataConfig& data,
                                       c10::Device device) {
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  data::Loader loader(ds, data.batch_size, data::LoaderOptions::for_evaluation(data));
  tasks::MetricSums sums;
  data::Batch b;
  while (loader.next(b))
    task.accumulate(sums, model.forward(b.inputs.to(device)), b.targets.to(device));
  model.train(was_training);
  return task.finish(sums);
}

}  // namespace sculpt::trainers
