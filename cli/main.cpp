#include "cli/app.h"

int main(int argc, char** argv) {
  return sculpt::cli::run_sculpt(argc, argv);
}
