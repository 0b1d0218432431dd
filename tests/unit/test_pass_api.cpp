// The pass API's layer selection: include/exclude regexes, per-layer overrides that only
// restate what they change (first match wins), strict patterns, bad regexes; the recipe's
// config round trip.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include "cli/app.h"
#include "compression/pass.h"
#include "core/config/config.h"
#include "core/data/dataset.h"
#include "core/models/model.h"

namespace {
using sculpt::compression::CompressionPass;

struct ProbeOptions : sculpt::config::Section {
  double factor = 1.0;
  int64_t bits = 8;
  void visit(sculpt::config::Visitor& v) override {
    v.field("factor", factor, "api_probe: a number");
    v.field("bits", bits, "api_probe: another");
  }
};

class Probe final : public CompressionPass {
 public:
  using CompressionPass::CompressionPass;
};

void register_probe() {
  auto& r = sculpt::compression::pass_registry();
  if (r.contains("api_probe")) return;
  r.add(
      "api_probe", "test-only pass",
      [](const sculpt::config::PassConfig& c) { return std::make_unique<Probe>(c); },
      [] { return std::make_shared<ProbeOptions>(); });
}

sculpt::config::Config parse(const std::string& recipe) {
  sculpt::cli::register_builtins();
  register_probe();
  return sculpt::config::Config::parse(
      "data: {name: synthetic_blobs}\nmodel: {name: mlp, hidden: [8, 8]}\ncompression:\n" +
      recipe);
}

std::unique_ptr<sculpt::models::Model> mlp() {
  auto cfg = parse("  - {name: api_probe}\n");
  return sculpt::models::model_registry().create("mlp", cfg.model,
                                                 sculpt::data::DataSpec{{16}, 4});
}
}  // namespace

TEST_CASE("passes select layers by regex; overrides restate only what they change",
          "[pass_api]") {
  auto model = mlp();  // layers hidden0.seq.0, hidden1.seq.0, head.seq.0
  auto cfg = parse(
      "  - name: api_probe\n"
      "    factor: 0.5\n"
      "    bits: 4\n"
      "    exclude: ['hidden0.*']\n"
      "    overrides:\n"
      "      - {layers: 'head.*', bits: 2}\n"
      "      - {layers: '.*seq.*', factor: 3.0}\n");
  auto recipe = sculpt::compression::build_recipe(cfg);
  REQUIRE(recipe.size() == 1);
  auto& pass = dynamic_cast<CompressionPass&>(*recipe[0]);
  auto targets = pass.select_layers(*model);
  REQUIRE(targets.size() == 2);
  CHECK(targets[0].name == "hidden1.seq.0");
  CHECK(targets[1].name == "head.seq.0");
  // hidden1: only the second override matches: factor 3, bits from the pass (4).
  const auto& h = CompressionPass::options_of<ProbeOptions>(targets[0]);
  CHECK(h.factor == 3.0);
  CHECK(h.bits == 4);
  // head: both match, the first wins as a whole item: its bits 2 and, unwritten there, the
  // pass's factor 0.5 (nothing of the second item).
  const auto& head = CompressionPass::options_of<ProbeOptions>(targets[1]);
  CHECK(head.factor == 0.5);
  CHECK(head.bits == 2);
  CHECK(pass.describe(targets[0]) == "factor: 3.0, bits: 4");
  // The recipe survives the resolved-YAML round trip.
  auto again = sculpt::config::Config::parse(cfg.dump());
  CHECK(again.hash() == cfg.hash());
  REQUIRE(again.compression.size() == 1);
  CHECK(again.compression[0].overrides.size() == 2);
  CHECK(dynamic_cast<ProbeOptions&>(*again.compression[0].overrides[0].options).bits == 2);
}

TEST_CASE("an include pattern that matches nothing warns, or fails when strict", "[pass_api]") {
  auto model = mlp();
  auto loose = parse("  - {name: api_probe, include: ['conv.*', 'head.*']}\n");
  auto targets = dynamic_cast<CompressionPass&>(*sculpt::compression::build_recipe(loose)[0])
                     .select_layers(*model);
  CHECK(targets.size() == 1);
  auto strict = parse("  - {name: api_probe, include: ['conv.*'], strict: true}\n");
  auto recipe = sculpt::compression::build_recipe(strict);
  CHECK_THROWS_WITH(
      dynamic_cast<CompressionPass&>(*recipe[0]).select_layers(*model),
      Catch::Contains("include pattern 'conv.*' matches no layer; the layers are: "
                      "hidden0.seq.0, hidden1.seq.0, head.seq.0"));
  auto bad = parse("  - {name: api_probe, include: ['(unclosed']}\n");
  CHECK_THROWS_WITH(
      dynamic_cast<CompressionPass&>(*sculpt::compression::build_recipe(bad)[0])
          .select_layers(*model),
      Catch::Contains("include '(unclosed' is not a valid regex"));
}
