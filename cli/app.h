// The `sculpt` command line, callable in-process (tests) as well as from main().
#pragma once

#include <string>
#include <vector>

namespace sculpt::cli {

// Registers every built-in family once per process (models, datasets, tasks, optimizers,
// schedulers, trainers, passes). Safe to call more than once.
void register_builtins();

// Runs `sculpt args...`; returns the exit code: 0 success, 2 bad usage or bad config/input,
// 1 failure at run time. Writes to stdout/stderr; never throws.
int run_sculpt(int argc, char** argv);

}  // namespace sculpt::cli
