// SIGINT/SIGTERM as a request: the trainer finishes its step, writes a checkpoint and exits 0
// with a message saying how to resume. A second signal while stopping ends the process at once.
#pragma once

namespace sculpt {
void install_stop_handlers();
bool stop_requested();
void clear_stop_request();  // tests
}  // namespace sculpt
