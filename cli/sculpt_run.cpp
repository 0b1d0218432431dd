#include "cli/launcher.h"

int main(int argc, char** argv) {
  return sculpt::launch::run_launcher(argc, argv);
}
