// Defaults for the sanitizer build's executables (cmake/SculptSanitizeReaders.cmake). The
// uninstrumented libraries of the normal build allocate registry entries while they are loaded
// (static initialization) and keep them for the life of the process; LeakSanitizer would report
// those once per process. Leaks from anything that runs later are still reported.
extern "C" const char* __lsan_default_suppressions() {
  return "leak:__static_initialization_and_destruction_0\nleak:_GLOBAL__sub_I_\n";
}
