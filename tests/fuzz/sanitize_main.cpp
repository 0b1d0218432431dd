// main() of the sanitizer build's executables (cmake/SculptSanitizeReaders.cmake). The readers'
// instrumented definitions interpose the normal build's libsculpt_core.so, so a global that both
// define (a constant table) is constructed by each and would be destroyed twice at exit: these
// mains flush and leave with _Exit after the real work, skipping static destructors.
#include <cstdio>
#include <cstdlib>
#include <iostream>

#ifdef SCULPT_SAN_CATCH
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#else
#include "cli/app.h"
#endif

int main(int argc, char** argv) {
#ifdef SCULPT_SAN_CATCH
  const int rc = Catch::Session().run(argc, argv);
#else
  const int rc = sculpt::cli::run_sculpt(argc, argv);
#endif
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  std::_Exit(rc);
}
