// Test plugin built "for another Sculpt": both entry points, written by hand, version 999.
extern "C" __attribute__((visibility("default"))) int sculpt_pass_api_version() {
  return 999;
}
extern "C" __attribute__((visibility("default"))) void sculpt_register_passes(void*) {}
