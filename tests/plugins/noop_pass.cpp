// Test plugin: registers `test_noop`, a pass that changes nothing, with one key of its own
// (`note`) so that tests see the config reader accept a plugin's keys. Built twice under two
// file names: loading both is the duplicate-name error.
#include "compression/plugin.h"

namespace {

struct NoopOptions : sculpt::config::Section {
  std::string note;  // free text, shown back in the summary
  void visit(sculpt::config::Visitor& v) override {
    v.field("note", note, "test_noop: free text, shown back in the summary");
  }
};

class NoopPass final : public sculpt::compression::CompressionPass {
 public:
  using CompressionPass::CompressionPass;
  nlohmann::json summary() const override {
    const auto* o = dynamic_cast<const NoopOptions*>(config().options.get());
    return {{"note", o ? o->note : ""}};
  }
};

void register_noop(sculpt::compression::PassRegistry& registry) {
  registry.add(
      "test_noop", "test plugin: does nothing",
      [](const sculpt::config::PassConfig& cfg) { return std::make_unique<NoopPass>(cfg); },
      [] { return std::make_shared<NoopOptions>(); });
}

}  // namespace

SCULPT_PLUGIN(register_noop)
