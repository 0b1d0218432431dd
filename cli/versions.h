// `sculpt versions DIR list|show V|diff A B [--no-eval] [--json]|rollback V [--out RUN]|add RUN`:
// the model version store of incremental runs (trainers/versions.h, docs/versions.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sculpt::cli {

struct VersionsArgs {
  std::string dir;                 // the version store
  std::string action;              // list | show | diff | rollback | add
  std::vector<std::string> args;   // V, A B, or RUN
  std::string out;                 // rollback: the run directory to write
  bool no_eval = false;            // diff: only the records, no rebuilt A/B evaluation
  bool json = false;               // diff: JSON instead of text
  int64_t latency_queries = 16;    // diff: batch-1 queries timed per round; 0: no latency
  int64_t rounds = 5;              // diff: latency rounds (A and B alternating), >= 1
};

// Exit 0; a corrupt store, an unknown version or bad arguments throw UserError (exit 2).
int cmd_versions(const VersionsArgs& a);

}  // namespace sculpt::cli
