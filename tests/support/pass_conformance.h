// The conformance suite of compression passes: one reusable test body that any pass, built-in
// or plugin, runs on a tiny model (an mlp on synthetic_blobs, CPU): the config round trip, every
// hook called in order through a real fit(), an exact continuation after a resume in the
// middle of the schedule, the summary as a JSON object, and identical pass state on 2 real
// ranks (the sculpt binary under DDP with Gloo). Runs in this process, so a pass registered by a
// plugin the test loaded first is found by name.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainers/callback.h"
#include "trainers/trainer.h"

namespace sculpt::config {
struct Config;
}

namespace sculpt::test {

struct ConformanceOptions {
  int64_t steps = 8;      // optimizer steps of the run, >= 2
  int64_t resume_at = 4;  // the checkpoint a second run resumes from, in [1, steps)
  std::string model = "{name: mlp, hidden: [16, 16]}";  // `model:` of the run
  std::string extra_yaml;  // more top-level YAML lines (e.g. "plugins: [lib.so]\n")
  // `data:` of the run (a token or seq2seq dataset for a language model, with extra_yaml's
  // `task:`).
  std::string data =
      "{name: synthetic_blobs, samples: 600, features: 8, classes: 4, batch_size: 16, prefetch: 0}";
};

// Catch2 checks, in the calling TEST_CASE, for the pass of `pass_item`: the YAML of one
// `compression:` list item, e.g. "{name: freeze, include: ['hidden0.*'], unfreeze_at: 5}".
// The checks are Catch2 SECTIONs, so Catch runs the calling TEST_CASE once per section: what
// it does first (load a plugin, register a pass) must be safe to repeat.
void run_pass_conformance(const std::string& pass_item, const ConformanceOptions& options = {});

// The YAML of the suite's run, writing to `dir`, with `items` as its compression: list.
std::string tiny_run_yaml(const std::string& dir, const std::vector<std::string>& items,
                          const ConformanceOptions& options = {});

// Trains `cfg` in this process with the standard trainer and `callbacks` (as `sculpt train`
// does with the recipe), log lines at warn and above.
trainers::FitResult train_in_process(const config::Config& cfg,
                                     const trainers::Callbacks& callbacks);

}  // namespace sculpt::test
