// The pass API's layer selection: include/exclude regexes, per-layer overrides that only
// restate what they change (first match wins), strict patterns, bad regexes; the recipe's
// config round trip.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include "cli/app.h"
#include "compression/pass.h"
#include "core/config/config.h"
#include "core/error.h"
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

TEST_CASE("a step point is steps, epochs or a fraction of the run, resolved to a step",
          "[pass_api][config]") {
  using sculpt::config::StepPoint;
  StepPoint p;
  REQUIRE(StepPoint::parse("500", p));
  CHECK(p.resolve(0, 0, "k") == 500);
  REQUIRE(StepPoint::parse("2e", p));
  CHECK(p.resolve(1000, 120, "k") == 240);
  REQUIRE(StepPoint::parse("1.5epochs", p));
  CHECK(p.resolve(1000, 120, "k") == 180);
  REQUIRE(StepPoint::parse("0.25", p));
  CHECK(p.unit == StepPoint::Unit::fraction);
  CHECK(p.resolve(1000, 120, "k") == 250);
  CHECK(p.str() == "0.25");
  CHECK_FALSE(StepPoint::parse("1.5", p));  // neither a step count nor a fraction
  CHECK_FALSE(StepPoint::parse("-3", p));
  CHECK_FALSE(StepPoint::parse("soon", p));
  REQUIRE(StepPoint::parse("2e", p));
  CHECK_THROWS_WITH(p.resolve(1000, 0, "compression freeze: unfreeze_at"),
                    Catch::Contains("unfreeze_at") && Catch::Contains("in epochs"));
}

TEST_CASE("every pass says a moment the same way, and a bad one names file, line and key",
          "[pass_api][config]") {
  // freeze, quantize and prune read the same forms.
  auto cfg = parse(
      "  - {name: freeze, unfreeze_at: 0.5}\n"
      "  - {name: quantize, warmup: 2e, freeze_observers_at: 300}\n"
      "  - {name: prune, start: 0.1, end: 3e, every: 50}\n");
  REQUIRE(cfg.compression.size() == 3);
  try {
    parse("  - {name: freeze, unfreeze_at: later}\n");
    FAIL("no error");
  } catch (const sculpt::UserError& e) {
    const std::string msg = e.what();
    CHECK_THAT(msg, Catch::Contains(":4:") && Catch::Contains("compression[0].unfreeze_at") &&
                        Catch::Contains("2e") && Catch::Contains("later"));
  }
  // A kind outside its enum lists the allowed spellings.
  CHECK_THROWS_WITH(parse("  - {name: prune, scorer: gradient}\n"),
                    Catch::Contains("compression[0].scorer") && Catch::Contains("magnitude") &&
                        Catch::Contains("fisher"));
}

TEST_CASE("passes that act on the whole model reject layer keys at config time",
          "[pass_api][config]") {
  for (const std::string item :
       {"{name: replay, include: ['hidden0.*']}", "{name: lwf, exclude: ['head.*']}",
        "{name: replay, strict: true}",
        "{name: lwf, overrides: [{layers: 'head.*', alpha: 1}]}"}) {
    INFO(item);
    try {
      parse("  - " + item + "\n");
      FAIL("no error");
    } catch (const sculpt::UserError& e) {
      const std::string msg = e.what();
      CHECK_THAT(msg, Catch::Contains(":4:") && Catch::Contains("this pass acts on the whole model"));
    }
  }
  CHECK_NOTHROW(parse("  - {name: replay, buffer: 10}\n"));
}
