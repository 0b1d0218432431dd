#include "core/builtins.h"

#include "core/data/dataset.h"
#include "core/models/model.h"
#include "core/optim/optimizers.h"
#include "core/optim/schedules.h"
#include "core/tasks/task.h"

namespace sculpt {

void register_core_builtins() {
  data::register_builtin_datasets(data::dataset_registry());
  models::register_builtin_models(models::model_registry());
  tasks::register_builtin_tasks(tasks::task_registry());
  register_builtin_optimizers(optimizer_registry());
  register_builtin_schedules(schedule_registry());
}

}  // namespace sculpt
