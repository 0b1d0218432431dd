#include "core/run/interrupt.h"

#include <unistd.h>
#include <csignal>
#include <cstdlib>

namespace sculpt {

namespace {
volatile std::sig_atomic_t g_stop = 0;

void on_signal(int sig) {
  if (g_stop) _exit(128 + sig);  // second signal: the user means it
  g_stop = 1;
  const char msg[] = "\nsculpt: stop requested; finishing the step and writing a checkpoint...\n";
  (void)!::write(2, msg, sizeof msg - 1);
}
}  // namespace

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

bool stop_requested() {
  return g_stop != 0;
}
void clear_stop_request() {
  g_stop = 0;
}

}  // namespace sculpt
