// `sculpt versions DIR list|show V|diff A B|rollback V [--out RUN]|add RUN`: the model version
// store of incremental runs (trainers/versions.h, docs/versions.md).
#pragma once

#include <string>
#include <vector>

namespace sculpt::cli {

struct VersionsArgs {
  std::string dir;                 // the version store
  std::string action;              // list | show | diff | rollback | add
  std::vector<std::string> args;   // V, A B, or RUN
  std::string out;                 // rollback: the run directory to write
};

// Exit 0; a corrupt store, an unknown version or bad arguments throw UserError (exit 2).
int cmd_versions(const VersionsArgs& a);

}  // namespace sculpt::cli
