// The loop's built-in callbacks, one file each, in the fixed order the loop calls them:
//   1 lr_schedule      on_step_begin: lr = optimizer.lr x the schedule's factor (with warm-up)
//   2 nonfinite_guard  on_backward_end: a NaN/Inf loss aborts or skips the update
//                      (trainer.nonfinite)
//   3 progress         on_step_end: the progress line on a terminal
//   4 metrics_logger   on_step_end: the train loss, lr and samples/s of every trainer.log_every
//                      steps (mean over the window and the ranks) to metrics.jsonl and the log
//   5 evaluation       on_step_end (trainer.eval_every) / on_epoch_end (eval_every 0): val
//                      metrics, the best checkpoint (trainer.best_metric), early stopping
//   6 checkpointing    on_step_end (trainer.checkpoint_every) / on_epoch_end (0): a checkpoint
//   7 stop_on_signal   on_step_end: after SIGINT/SIGTERM a checkpoint, then the loop ends
// The recipe's passes run inside the step (train_loop.cpp's one_step says where).
#pragma once

#include <memory>

#include "trainers/train_loop.h"

namespace sculpt::trainers {

std::unique_ptr<LoopCallback> make_lr_schedule();
std::unique_ptr<LoopCallback> make_nonfinite_guard();
std::unique_ptr<LoopCallback> make_progress();
std::unique_ptr<LoopCallback> make_metrics_logger();
std::unique_ptr<LoopCallback> make_evaluation();
std::unique_ptr<LoopCallback> make_checkpointing();
std::unique_ptr<LoopCallback> make_stop_on_signal();

// All of them, in the order above.
LoopCallbacks builtin_loop_callbacks();

}  // namespace sculpt::trainers
