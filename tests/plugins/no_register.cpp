// Test plugin with an API version but no register function: a missing entry point.
extern "C" __attribute__((visibility("default"))) int sculpt_pass_api_version() {
  return 1;
}
