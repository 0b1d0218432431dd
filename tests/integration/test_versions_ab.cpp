// Model versions, the A/B report and bad updates (issue 27, part 3; docs/versions.md): `sculpt
// versions DIR diff A B` rebuilds both versions' weights and evaluates them on the same test
// sets (every slice of the newer version's config), with sizes and batch-1 latency; an update
// whose tokenizer or ID scheme differs from its parent version's is refused with exit 2 naming
// both, before anything trains; so is a removed document that does not exist.
#include <catch2/catch.hpp>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/integration/versions_support.h"
#include "tests/support/process.h"

namespace fs = std::filesystem;
using sculpt::test::run_process;
using namespace sculpt::test::versions;

namespace {
std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
  return s;
}

// The A/B value of `slice` for side "a" or "b".
double ab_value(const nlohmann::json& ab, const std::string& slice, const char* side) {
  for (const auto& s : ab.at("slices"))
    if (s.at("name") == slice) return s.at(side).at("value").get<double>();
  FAIL("no slice " << slice << " in " << ab.dump());
  return 0;
}
}  // namespace

TEST_CASE("diff A B rebuilds both versions and evaluates them on the same test sets",
          "[gr][versions][slow]") {
  const auto run = trained("full");
  const auto store = run + "/versions";
  const auto v1 = read_json(store + "/v1/version.json");
  const auto v2 = read_json(store + "/v2/version.json");
  const auto v4 = read_json(store + "/v4/version.json");
  // The base (random weights) and the last version measured differently on some slice: a report
  // that took B's numbers from A (or the records) for both would fail below.
  bool differ = false;
  for (size_t k = 0; k < 3; ++k)
    differ |= v1["metrics"]["slices"][k]["value"] != v4["metrics"]["slices"][k]["value"];
  REQUIRE(differ);

  auto r = run_process(versions_cmd(store, "diff 1 4 --json --latency-queries 4 --rounds 3"));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const auto j = nlohmann::json::parse(r.out);
  const auto& ab = j.at("ab");
  INFO(ab.dump(1));
  CHECK(ab["config_from"] == 4);
  CHECK(ab["metric"] == "hits@1");
  REQUIRE(ab["slices"].size() == 3);  // old, new_a, new_b: every slice of version 4's config
  const std::vector<std::pair<std::string, int64_t>> slices = {
      {"old", 40}, {"new_a", 10}, {"new_b", 20}};
  for (size_t k = 0; k < slices.size(); ++k) {
    const auto& s = ab["slices"][k];
    CHECK(s["name"] == slices[k].first);
    CHECK(s["n"] == slices[k].second);  // the same queries for both
    // Each rebuilt version gives on these queries what it recorded when it was written (the
    // same data config: the run's), A from A's weights and B from B's.
    CHECK(s["a"]["value"].get<double>() ==
          Approx(v1["metrics"]["slices"][k]["value"].get<double>()).margin(1e-12));
    CHECK(s["b"]["value"].get<double>() ==
          Approx(v4["metrics"]["slices"][k]["value"].get<double>()).margin(1e-12));
    CHECK(s["b"]["lo"].get<double>() <= s["b"]["value"].get<double>());
    CHECK(s["diff"].get<double>() ==
          Approx(s["b"]["value"].get<double>() - s["a"]["value"].get<double>()));
  }
  // Bytes: the full weights of each, and what each stores (v1 the full file, v4 its delta).
  CHECK(ab["bytes"]["a"]["weights"] == v1["delta"]["full_bytes"]);
  CHECK(ab["bytes"]["b"]["weights"] == v4["delta"]["full_bytes"]);
  CHECK(ab["bytes"]["a"]["stored"] == file_bytes(store + "/v1/weights.safetensors"));
  CHECK(ab["bytes"]["b"]["stored"] == file_bytes(store + "/v4/delta.safetensors"));
  // Batch-1 latency: 3 rounds of 4 queries each, medians.
  CHECK(ab["latency"]["queries"] == 4);
  CHECK(ab["latency"]["a_rounds_ms"].size() == 3);
  CHECK(ab["latency"]["a_ms"].get<double>() > 0);
  CHECK(ab["latency"]["b_ms"].get<double>() > 0);
  // The recorded part is still there.
  CHECK(j["tensors"]["differ"].size() > 0);
  CHECK(j["recorded"]["slices"].size() == 3);

  // An older B: the slices of the newer version (2: after "old" only); A is 2 here.
  auto r2 = run_process(versions_cmd(store, "diff 2 1 --json --latency-queries 0"));
  INFO(r2.err);
  REQUIRE(r2.exit_code == 0);
  const auto ab2 = nlohmann::json::parse(r2.out).at("ab");
  CHECK(ab2["config_from"] == 2);
  REQUIRE(ab2["slices"].size() == 1);
  CHECK(ab_value(ab2, "old", "a") ==
        Approx(v2["metrics"]["slices"][0]["value"].get<double>()).margin(1e-12));
  CHECK(ab_value(ab2, "old", "b") ==
        Approx(v1["metrics"]["slices"][0]["value"].get<double>()).margin(1e-12));
  CHECK_FALSE(ab2.contains("latency"));

  // Text, and the old fast diff.
  auto text = run_process(versions_cmd(store, "diff 3 4 --latency-queries 2 --rounds 1"));
  INFO(text.err);
  REQUIRE(text.exit_code == 0);
  CHECK_THAT(text.out, Catch::Contains("A/B") && Catch::Contains("batch-1 latency") &&
                           Catch::Contains("new_b") && Catch::Contains("max |b - a|"));
  auto fast = run_process(versions_cmd(store, "diff 3 4 --no-eval"));
  REQUIRE(fast.exit_code == 0);
  CHECK_THAT(fast.out, !Catch::Contains("A/B") && Catch::Contains("recorded metrics"));
  auto misuse = run_process(versions_cmd(store, "list --json"));
  CHECK(misuse.exit_code == 2);
  CHECK_THAT(misuse.err, Catch::Contains("options of diff"));
}

TEST_CASE("an update whose tokenizer or ID scheme differs from its parent's is refused (exit 2)",
          "[gr][versions][slow]") {
  // A store from one short increment.
  const std::string dir = sculpt::test::temp_dir("versions_lineage");
  auto base = sculpt::test::read_text(gr_config(dir, "first", ""));
  base = replace_all(base, "epochs: 3", "epochs: 1");
  base = base.substr(0, base.find("  - {name: new_a"));
  sculpt::test::write_text(dir + "/first.yaml", base);
  auto first = run_process(kSculpt + " train " + dir + "/first.yaml --log-level warn");
  INFO(first.err);
  REQUIRE(first.exit_code == 0);
  const std::string store = dir + "/first/versions";
  REQUIRE(fs::exists(store + "/v2/version.json"));
  const auto v2 = read_json(store + "/v2/version.json");
  CHECK(v2["data"]["tokenizer"]["vocab"] == 200);
  CHECK(v2["data"]["id_scheme"]["id_branch"] == 10);
  CHECK(v2["data"]["id_scheme"]["sha256"].get<std::string>().size() == 64);

  // The next run writes into the same store: its parent is version 2.
  auto next = [&](const std::string& name, const std::string& from, const std::string& to) {
    auto text = replace_all(base, dir + "/first", dir + "/" + name);
    text = replace_all(text, "versions: true", "versions: true, versions_dir: " + store);
    text = replace_all(text, from, to);
    sculpt::test::write_text(dir + "/" + name + ".yaml", text);
    return run_process(kSculpt + " train " + dir + "/" + name + ".yaml --log-level warn");
  };
  auto tok = next("tok", "vocab: 200", "vocab: 300");
  CHECK(tok.exit_code == 2);
  CHECK_THAT(tok.err, Catch::Contains("increments[0] (old)") && Catch::Contains("version 2") &&
                          Catch::Contains("tokenizer: ") && Catch::Contains("\"vocab\":200") &&
                          Catch::Contains("\"vocab\":300"));
  auto ids = next("ids", "index_stride: 4", "index_stride: 4, id_branch: 8");
  CHECK(ids.exit_code == 2);
  CHECK_THAT(ids.err, Catch::Contains("id_scheme: ") && Catch::Contains("\"id_branch\":10") &&
                          Catch::Contains("\"id_branch\":8"));
  CHECK_THAT(ids.err, !Catch::Contains("tokenizer: "));
  // Refused before anything trained or was written.
  CHECK_FALSE(fs::exists(store + "/v3"));
  CHECK_FALSE(fs::exists(dir + "/tok/checkpoints/step_1"));
  // The same data continues the store.
  auto same = next("same", "epochs: 1", "epochs: 1");
  INFO(same.err);
  CHECK(same.exit_code == 0);
  CHECK(read_json(store + "/v3/version.json")["parent"] == 2);

  // `versions add` of a run over another vocabulary: refused, nothing written.
  const std::string other = dir + "/other_run";
  fs::create_directories(other);
  fs::copy_file(dir + "/first/model.safetensors", other + "/model.safetensors");
  sculpt::test::write_text(
      other + "/config.yaml",
      replace_all(sculpt::test::read_text(dir + "/first/config.yaml"), "vocab: 200", "vocab: 300"));
  auto add = run_process(versions_cmd(store, "add " + other));
  CHECK(add.exit_code == 2);
  CHECK_THAT(add.err, Catch::Contains("differs from its parent version 3") &&
                          Catch::Contains("\"vocab\":300"));
  CHECK_FALSE(fs::exists(store + "/v4"));

  // A removed document that does not exist: named, exit 2.
  auto gone = next("gone", "documents: old", "documents: old, removed_docs: ['999']");
  CHECK(gone.exit_code == 2);
  CHECK_THAT(gone.err, Catch::Contains("removed_docs") && Catch::Contains("'999'"));
}
