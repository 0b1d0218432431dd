// The worker side of torchrun's protocol, for `sculpt train` under sculpt-run or torchrun:
// the error file a failed worker leaves for its launcher, and resuming after a group restart.
#pragma once

#include <string>

namespace sculpt::config {
struct Config;
}

namespace sculpt::cli {

// When TORCHELASTIC_ERROR_FILE is set, writes the fatal error there in torchelastic's JSON shape
// {"message": {"message": "<type>: <what>", "extraInfo": {"py_callstack": ..., "timestamp":
// "<unix seconds>"}}}, atomically. Never throws (a failure to write is reported on stderr).
void write_elastic_error(const std::string& type, const std::string& what);

// A restarted worker group (TORCHELASTIC_RESTART_COUNT > 0) continues the run from its last
// checkpoint: sets run.resume=auto unless the config or the command line chose a resume target.
void resume_after_restart(config::Config& cfg);

}  // namespace sculpt::cli
