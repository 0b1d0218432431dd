// Model versions (issue 27, parts 3 and 1; docs/versions.md): an incremental generative-
// retrieval run with incremental.versions writes a base and one version per increment; `sculpt
// versions` lists, shows, diffs and rolls back, bit-identically and with the recorded metric;
// a corrupt store, an unknown version and a missing parent are named (exit 2). Every Hits@k
// comes with its queries and a 95% Wilson interval; summary.json has per-slice forgetting.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/data/dataset.h"
#include "core/data/docids.h"
#include "core/io/safetensors.h"
#include "core/tasks/decoding.h"
#include "core/tasks/wilson.h"
#include "tests/integration/versions_support.h"
#include "tests/support/load_dataset.h"
#include "tests/support/process.h"
#include "trainers/versions.h"

namespace fs = std::filesystem;
using sculpt::test::run_process;
using namespace sculpt::test::versions;

namespace {
std::map<std::string, std::string> tensor_bytes(const std::string& file) {
  std::map<std::string, std::string> out;
  for (auto& [name, t] : sculpt::io::load_safetensors(file)) {
    auto c = t.contiguous();
    out[name] = std::string(static_cast<const char*>(c.data_ptr()), c.nbytes());
  }
  return out;
}
}  // namespace

TEST_CASE("the Wilson interval matches the formula on known counts", "[gr][versions]") {
  using sculpt::tasks::wilson_interval;
  auto [lo, hi] = wilson_interval(0.5, 100);
  CHECK(lo == Approx(0.4038315).epsilon(1e-6));
  CHECK(hi == Approx(0.5961685).epsilon(1e-6));
  std::tie(lo, hi) = wilson_interval(0.0, 10);
  CHECK(lo == 0.0);
  CHECK(hi == Approx(0.2775328).epsilon(1e-6));
  std::tie(lo, hi) = wilson_interval(0.8, 10);
  CHECK(lo == Approx(0.4901625).epsilon(1e-6));
  CHECK(hi == Approx(0.9433178).epsilon(1e-6));
  std::tie(lo, hi) = wilson_interval(0.081, 1000);
  CHECK(lo == Approx(0.0656496).epsilon(1e-5));
  CHECK(hi == Approx(0.0995572).epsilon(1e-5));
  std::tie(lo, hi) = wilson_interval(1.0, 10);
  CHECK(hi == Approx(1.0));
  CHECK(lo == Approx(0.7224672).epsilon(1e-6));
}

TEST_CASE("sha256 of known strings", "[gr][versions]") {
  using sculpt::trainers::versions::sha256_hex;
  CHECK(sha256_hex("", 0) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc", 3) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  CHECK(sha256_hex(m.data(), m.size()) ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const std::string million(1000000, 'a');
  CHECK(sha256_hex(million.data(), million.size()) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("an incremental GR run writes versions 1..4 that list, show, diff and roll back",
          "[gr][versions][slow]") {
  const auto run = trained("full");
  const auto store = run + "/versions";
  for (int v = 1; v <= 4; ++v) REQUIRE(fs::exists(store + "/v" + std::to_string(v) + "/version.json"));
  CHECK_FALSE(fs::exists(store + "/v5"));

  // Part 1: queries and intervals beside every Hits@k; per-slice forgetting in summary.json.
  const auto summary = read_json(run + "/summary.json");
  const auto& slices = summary["continual"]["slices"];
  REQUIRE(slices.size() == 3);
  for (const auto& s : slices) {
    INFO(s.dump());
    CHECK(s["n"].get<int64_t>() > 0);
    CHECK(s["lo"].get<double>() <= s["value"].get<double>());
    CHECK(s["hi"].get<double>() >= s["value"].get<double>());
    const auto [lo, hi] = sculpt::tasks::wilson_interval(s["value"].get<double>(),
                                                         s["n"].get<double>());
    CHECK(s["lo"].get<double>() == Approx(lo));
    CHECK(s["hi"].get<double>() == Approx(hi));
    CHECK(s["forgetting"].get<double>() ==
          Approx(s["learned"].get<double>() - s["value"].get<double>()));
  }
  CHECK(slices[0]["n"].get<int64_t>() == 40);  // one test query per old document
  CHECK(slices[1]["n"].get<int64_t>() == 10);
  CHECK_THAT(sculpt::test::read_text(run + "/report.html"), Catch::Contains("forgetting"));

  // version.json: parents, what changed, per-slice metrics, checksums.
  const auto v1 = read_json(store + "/v1/version.json");
  const auto v2 = read_json(store + "/v2/version.json");
  const auto v3 = read_json(store + "/v3/version.json");
  const auto v4 = read_json(store + "/v4/version.json");
  CHECK(v1["parent"].is_null());
  CHECK(v1["kind"] == "full");
  CHECK(v2["parent"] == 1);
  CHECK(v4["parent"] == 3);
  CHECK(v2["changes"]["documents_added"] == 40);
  CHECK(v3["changes"]["documents_added"] == 10);
  CHECK(v4["changes"]["documents_added"] == 10);
  CHECK(v4["changes"]["documents"] == 60);
  CHECK(v4["metrics"]["slices"].size() == 3);
  CHECK(v2["metrics"]["slices"][0]["value"] ==
        summary["continual"]["accuracy_matrix"][0][0]);
  CHECK(v2["files"].contains("delta.safetensors"));
  CHECK(v2["config"].get<std::string>().find("versions: true") != std::string::npos);

  auto list = run_process(versions_cmd(store, "list"));
  INFO(list.err);
  REQUIRE(list.exit_code == 0);
  CHECK_THAT(list.out, Catch::Contains("+40 docs") && Catch::Contains("+10 docs") &&
                           Catch::Contains("hits@1"));
  auto show = run_process(versions_cmd(store, "show 2"));
  REQUIRE(show.exit_code == 0);
  CHECK(nlohmann::json::parse(show.out)["parent"] == 1);
  auto diff = run_process(versions_cmd(store, "diff 2 4"));
  INFO(diff.err);
  REQUIRE(diff.exit_code == 0);
  CHECK_THAT(diff.out, Catch::Contains("changed") && Catch::Contains("new_b") &&
                           Catch::Contains("max |b - a|"));

  // Full fine-tuning moves (nearly) every tensor: the delta is about a full checkpoint.
  const double ratio = v2["delta"]["ratio"].get<double>();
  WARN("full fine-tuning: version 2's delta is " << ratio << " of the full weights");

  // Rollback to 2: bit-identical to the checkpoint written at the end of increment 0, and
  // `sculpt eval` on it gives the recorded metric.
  const std::string out = run + "/rolled";
  auto rb = run_process(versions_cmd(store, "rollback 2 --out " + out));
  INFO(rb.err);
  REQUIRE(rb.exit_code == 0);
  CHECK(sculpt::test::read_text(store + "/current") == "2\n");
  const int64_t step = v2["source"]["step"].get<int64_t>();
  const auto ckpt = run + "/checkpoints/step_" + std::to_string(step) + "/model.safetensors";
  REQUIRE(fs::exists(ckpt));
  const auto want = tensor_bytes(ckpt), got = tensor_bytes(out + "/model.safetensors");
  CHECK(want.size() == got.size());
  CHECK(want == got);
  auto ev = run_process(kSculpt + " eval " + out + "/config.yaml --weights " + out +
                        "/model.safetensors --log-level warn");
  INFO(ev.err);
  REQUIRE(ev.exit_code == 0);
  const auto m = nlohmann::json::parse(ev.out);
  CHECK(m["test"]["hits@1"].get<double>() ==
        Approx(v2["metrics"]["slices"][0]["value"].get<double>()).margin(1e-12));
  // Every Hits@k of the task with its queries and interval.
  const auto& test = m["test"];
  INFO(test.dump());
  CHECK(test["hits@1_n"].get<double>() == 40);
  CHECK(test["hits@1_lo"].get<double>() <= test["hits@1"].get<double>());
  CHECK(test["hits@4_hi"].get<double>() >= test["hits@4"].get<double>());
  // A new version's parent is the current one (after the rollback: 2).
  sculpt::trainers::versions::Store s(store);
  CHECK(s.current() == 2);
}

TEST_CASE("a corrupt store, an unknown version and a missing parent are named (exit 2)",
          "[gr][versions][slow]") {
  const auto run = trained("full");
  const std::string store = sculpt::test::temp_dir("versions_bad") + "/store";
  fs::copy(run + "/versions", store, fs::copy_options::recursive);

  auto unknown = run_process(versions_cmd(store, "rollback 9"));
  CHECK(unknown.exit_code == 2);
  CHECK_THAT(unknown.err, Catch::Contains("no version 9") &&
                              Catch::Contains("known versions: 1, 2, 3, 4"));

  // One flipped byte in a delta: named, nothing written.
  const auto delta = store + "/v3/delta.safetensors";
  {
    std::fstream f(delta, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-5, std::ios::end);
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x40);
    f.seekp(-5, std::ios::end);
    f.write(&c, 1);
  }
  const auto current_before = sculpt::test::read_text(store + "/current");
  auto bad = run_process(versions_cmd(store, "rollback 4 --out " + store + "/../out4"));
  CHECK(bad.exit_code == 2);
  CHECK_THAT(bad.err, Catch::Contains("v3/delta.safetensors") && Catch::Contains("checksum"));
  CHECK_FALSE(fs::exists(store + "/../out4"));
  CHECK(sculpt::test::read_text(store + "/current") == current_before);
  // Version 2 does not depend on 3: it still rolls back.
  CHECK(run_process(versions_cmd(store, "rollback 2 --out " + store + "/../out2")).exit_code == 0);

  // version.json changed by hand.
  auto j = sculpt::test::read_text(store + "/v2/version.json");
  j.replace(j.find("\"parent\": 1"), 11, "\"parent\": 1 ");
  sculpt::test::write_text(store + "/v2/version.json", j);
  auto hand = run_process(versions_cmd(store, "show 2"));
  CHECK(hand.exit_code == 0);  // whitespace only: the JSON is the same
  auto j2 = read_json(store + "/v2/version.json");
  j2["metrics"]["headline"] = 0.99;
  sculpt::test::write_text(store + "/v2/version.json", j2.dump(2));
  auto hand2 = run_process(versions_cmd(store, "show 2"));
  CHECK(hand2.exit_code == 2);
  CHECK_THAT(hand2.err, Catch::Contains("v2/version.json") && Catch::Contains("checksum"));

  // A delta whose parent is missing.
  fs::remove_all(store + "/v2");
  auto orphan = run_process(versions_cmd(store, "diff 1 3"));
  CHECK(orphan.exit_code == 2);
  CHECK_THAT(orphan.err, Catch::Contains("parent version 2 is missing"));
}

TEST_CASE("a LoRA update's version delta holds the adapters only", "[gr][versions][slow]") {
  // As PEFT: everything but the adapters frozen (bias: none), so the delta is the adapters.
  const auto run = trained("lora", "compression: [{name: lora, rank: 2, alpha: 4}]\n");
  const auto store = run + "/versions";
  const auto v1 = read_json(store + "/v1/version.json");
  const auto v3 = read_json(store + "/v3/version.json");
  CHECK(v3["kind"] == "adapters");
  CHECK_FALSE(v3["adapters"].empty());
  const double ratio = v3["delta"]["ratio"].get<double>();
  const int64_t full = file_bytes(store + "/v1/weights.safetensors");
  const int64_t delta = file_bytes(store + "/v3/delta.safetensors");
  WARN("LoRA update: version 3's delta " << delta << " bytes, full weights "
                                         << v3["delta"]["full_bytes"] << " bytes (ratio " << ratio
                                         << "); the base file " << full << " bytes");
  CHECK(delta < full);
  // Rank 2 of d_model 32: the adapters are 8.9% of the weights, the file's header 2.1%.
  CHECK(ratio < 0.12);
  CHECK(v3["delta"]["tensors"].size() == 2 * v3["adapters"].size());
  for (const auto& name : v3["delta"]["tensors"]) {
    INFO(name);
    CHECK(name.get<std::string>().find(".wt_lora.") != std::string::npos);
  }
  // Rollback merges the adapters; `sculpt eval` on the plain model gives the recorded metric.
  const std::string out = run + "/rolled3";
  auto rb = run_process(versions_cmd(store, "rollback 3 --out " + out));
  INFO(rb.err);
  REQUIRE(rb.exit_code == 0);
  for (auto& [name, _] : sculpt::io::load_safetensors(out + "/model.safetensors"))
    CHECK(name.find(".wt_lora.") == std::string::npos);
  // Version 4 is the last increment's state: merged, it is the run's model, bit for bit.
  auto rb4 = run_process(versions_cmd(store, "rollback 4 --out " + run + "/rolled4"));
  INFO(rb4.err);
  REQUIRE(rb4.exit_code == 0);
  CHECK(tensor_bytes(run + "/rolled4/model.safetensors") ==
        tensor_bytes(run + "/model.safetensors"));
  auto ev = run_process(kSculpt + " eval " + out + "/config.yaml --weights " + out +
                        "/model.safetensors compression=[] --log-level warn");
  INFO(ev.err);
  REQUIRE(ev.exit_code == 0);
  const auto m = nlohmann::json::parse(ev.out);
  CHECK(m["test"]["hits@1"].get<double>() ==
        Approx(v3["metrics"]["slices"][0]["value"].get<double>()).margin(1e-12));
  (void)v1;
}

TEST_CASE("removed_docs leave the ID trie: constrained decoding never emits them",
          "[gr][versions]") {
  namespace data = sculpt::data;
  using data::DataPart;
  // IdTrie::remove prunes the branch.
  data::IdTrie trie;
  trie.insert({10, 20, 2});
  trie.insert({10, 21, 2});
  trie.insert({11, 2});
  trie.remove({10, 21, 2});
  CHECK_FALSE(trie.contains({10, 21, 2}));
  CHECK(trie.size() == 2);
  CHECK(trie.allowed(trie.walk({10})) == std::vector<int64_t>{20});
  trie.remove({11, 2});
  CHECK(trie.allowed(0) == std::vector<int64_t>{10});
  CHECK_THROWS_WITH(trie.remove({11, 2}), Catch::Contains("not in the ID trie"));

  const std::string corpus =
      "{name: gr_synthetic, docs: 12, topics: 2, vocab: 40, doc_len: 8, query_len: 4, "
      "id_branch: 4, id_reserve: 0.5, id_dims: 0";
  auto full = sculpt::test::load_dataset(corpus + "}", DataPart::test);
  auto cut = sculpt::test::load_dataset(corpus + ", removed_docs: ['3', '5']}", DataPart::test);
  const auto& ftrie = *full->spec().valid_targets;
  const auto& ctrie = *cut->spec().valid_targets;
  CHECK(ftrie.size() == 12);
  CHECK(ctrie.size() == 10);
  CHECK(cut->size() == full->size() - 2);  // one test query per document
  auto id_of = [&](int64_t row) {
    auto t = full->targets()[row];
    data::TokenSeq id(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
    while (!id.empty() && id.back() == data::token::pad) id.pop_back();
    return id;
  };
  const auto removed = id_of(3);
  CHECK_FALSE(ctrie.contains(removed));
  CHECK_FALSE(ctrie.contains(id_of(5)));
  for (int64_t d : {0, 1, 2, 4, 6, 11}) CHECK(ctrie.contains(id_of(d)));  // the others unchanged

  // A model that strongly prefers the removed ID's tokens: the full trie's best beam is that ID,
  // the cut trie never emits it.
  const int64_t s = full->spec().source_len, t = full->targets().size(1);
  const int64_t v = full->spec().vocab_size;
  sculpt::tasks::Forward fwd = [&](const at::Tensor& x) {
    auto logits = at::zeros({x.size(0), x.size(1) - s, v});
    for (size_t p = 0; p < removed.size() && int64_t(p) < logits.size(1); ++p)
      logits.select(1, int64_t(p)).select(1, removed[p]).fill_(50.0);
    return logits;
  };
  auto source = full->inputs().narrow(1, 0, s);
  auto with = sculpt::tasks::beam_search(fwd, source, t, 4, &ftrie);
  auto without = sculpt::tasks::beam_search(fwd, source, t, 12, &ctrie);
  auto rm = at::full({t}, data::token::pad, at::kLong);
  for (size_t p = 0; p < removed.size(); ++p) rm[int64_t(p)] = removed[p];
  CHECK(with.tokens.select(1, 0).eq(rm).all(1).all().item<bool>());
  CHECK_FALSE(without.tokens.eq(rm).all(2).any().item<bool>());
  // Every finite beam is a remaining ID.
  for (int64_t b = 0; b < without.tokens.size(0); ++b)
    for (int64_t k = 0; k < 12; ++k) {
      if (!std::isfinite(without.scores[b][k].item<float>())) continue;
      auto row = without.tokens[b][k];
      data::TokenSeq id(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + row.numel());
      while (!id.empty() && id.back() == data::token::pad) id.pop_back();
      CHECK(ctrie.contains(id));
    }

  // An unknown document is named.
  try {
    sculpt::test::load_dataset(corpus + ", removed_docs: ['99']}", DataPart::test);
    FAIL("no error");
  } catch (const std::exception& e) {
    CHECK_THAT(std::string(e.what()), Catch::Contains("removed_docs") && Catch::Contains("'99'"));
  }
}
