// Three updates of new documents in one incremental run (gr_synthetic `updates: 3`,
// increments old, update1..3) report every slice with its test queries; a run chained with
// incremental.resume_from after the first update ends with the same matrix, weights and
// pseudo-query replay buffer as the one run. LoRA adapters (frozen base weights) compose with
// EWC and replay in an update.
#include <catch2/catch.hpp>

#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <nlohmann/json.hpp>

#include "core/io/safetensors.h"
#include "tests/support/process.h"

namespace fs = std::filesystem;

namespace {
const std::string kSculpt = SCULPT_BIN;

// A tiny GR model over increments `old, update1.. update<n>` of a 40-document corpus with three
// updates of 4, EWC and pseudo-query replay (or `compression`); `resume_from` an earlier run or
// "".
const std::string kEwcPseudo =
    "  - {name: ewc, lambda: 1, samples: 32}\n"
    "  - {name: replay, buffer: 60, source: pseudo_queries, pseudo_queries: 2, ratio: 0.5}\n";
std::string updates_config(const std::string& dir, const std::string& name, int n,
                           const std::string& resume_from = "",
                           const std::string& compression = kEwcPseudo) {
  const std::string corpus =
      "name: gr_synthetic, docs: 40, new_docs: 4, updates: 3, topics: 4, vocab: 200, "
      "doc_len: 16, query_len: 8, id_dims: 0, test_queries: 2, index_stride: 4";
  std::string incs = "  - {name: old, data: {" + corpus + ", documents: old}}\n";
  for (int k = 1; k <= n; ++k)
    incs += "  - {name: update" + std::to_string(k) + ", data: {" + corpus +
            ", documents: update" + std::to_string(k) + "}}\n";
  const std::string path = dir + "/" + name + ".yaml";
  sculpt::test::write_text(
      path,
      "run: {name: " + name + ", output_dir: " + dir + "/" + name + ", device: cpu, seed: 2}\n"
      "data: {" + corpus + ", documents: old, batch_size: 16, val_fraction: 0.1}\n"
      "model: {name: transformer_seq2seq, d_model: 16, heads: 2, layers: 1, ff: 32}\n"
      "task: {name: generative_retrieval}\n"
      "optimizer: {name: adamw, lr: 0.003}\n"
      "scheduler: {name: constant, warmup_steps: 0}\n"
      "trainer: {name: incremental, epochs: 2, log_every: 100, eval_every: 100000, "
      "final_train_eval: false, tensorboard: false}\n"
      "incremental: {metric: hits@1, eval_on: test" +
      (resume_from.empty() ? "" : ", resume_from: " + resume_from) + "}\n"
      "compression:\n" + compression + "increments:\n" + incs);
  return path;
}

nlohmann::json read_json(const fs::path& p) {
  return nlohmann::json::parse(sculpt::test::read_text(p.string()));
}

void train(const std::string& cfg) {
  auto r = sculpt::test::run_process(kSculpt + " train " + cfg + " --log-level warn");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
}
}  // namespace

TEST_CASE("three updates in one incremental run report every slice; a chained run equals it",
          "[gr][continual][slow]") {
  const std::string dir = sculpt::test::temp_dir("gr_updates");
  train(updates_config(dir, "one", 3));
  const auto s = read_json(fs::path(dir) / "one" / "summary.json");
  const auto& c = s["continual"];
  REQUIRE(c["slices"].size() == 4);
  const std::vector<std::string> names = {"old", "update1", "update2", "update3"};
  for (size_t k = 0; k < 4; ++k) {
    INFO(k);
    const auto& sl = c["slices"][k];
    CHECK(sl["name"] == names[k]);
    CHECK(sl["n"] == (k == 0 ? 40 * 2 : 4 * 2));  // test queries of the slice's documents
    CHECK(sl["lo"].get<double>() <= sl["value"].get<double>());
    CHECK(sl["value"].get<double>() <= sl["hi"].get<double>());
    if (k < 3) CHECK(sl.contains("forgetting"));
  }
  // The replay buffer holds pseudo queries of every increment's documents: 2 per document.
  const auto& replay = s["compression"][1]["summary"];
  CHECK(replay["source"] == "pseudo_queries");
  CHECK(replay["generated"] == (40 + 3 * 4) * 2);
  CHECK(replay["buffer"] == 60);

  // The same after the first update, then resume_from for the other two.
  train(updates_config(dir, "first", 1));
  train(updates_config(dir, "rest", 3, dir + "/first"));
  const auto r = read_json(fs::path(dir) / "rest" / "summary.json")["continual"];
  CHECK(r["accuracy_matrix"] == c["accuracy_matrix"]);
  CHECK(r["slices"] == c["slices"]);
  const auto wa = sculpt::io::load_safetensors(dir + "/one/model.safetensors");
  const auto wb = sculpt::io::load_safetensors(dir + "/rest/model.safetensors");
  REQUIRE(wa.size() == wb.size());
  for (size_t i = 0; i < wa.size(); ++i) CHECK(wa[i].second.equal(wb[i].second));
  const auto ba = sculpt::io::load_safetensors(dir + "/one/replay_buffer.safetensors");
  const auto bb = sculpt::io::load_safetensors(dir + "/rest/replay_buffer.safetensors");
  REQUIRE(ba.size() == bb.size());
  for (size_t i = 0; i < ba.size(); ++i) CHECK(ba[i].second.equal(bb[i].second));
  CHECK(read_json(fs::path(dir) / "one" / "replay_buffer.json") ==
        read_json(fs::path(dir) / "rest" / "replay_buffer.json"));
}

// configs/gr/updates.yaml's shape: the run's `data:` is the teacher's corpus (`updates_of_data`,
// the default 1) while the increments' corpus has three updates of 4 documents; replay of stored
// rows, enough training that every update is learned.
std::string own_corpus_config(const std::string& dir, const std::string& name,
                              int updates_of_data) {
  const std::string corpus =
      "name: gr_synthetic, docs: 40, new_docs: 4, topics: 4, vocab: 200, doc_len: 16, "
      "query_len: 8, id_dims: 0, test_queries: 2, index_stride: 1";
  std::string incs = "  - {name: old, data: {" + corpus + ", updates: 3, documents: old}}\n";
  for (int k = 1; k <= 3; ++k)
    incs += "  - {name: update" + std::to_string(k) + ", data: {" + corpus +
            ", updates: 3, documents: update" + std::to_string(k) + "}}\n";
  const std::string path = dir + "/" + name + ".yaml";
  sculpt::test::write_text(
      path,
      "run: {name: " + name + ", output_dir: " + dir + "/" + name + ", device: cpu, seed: 2}\n"
      "data: {" + corpus + ", updates: " + std::to_string(updates_of_data) +
      ", documents: all, batch_size: 16, val_fraction: 0.1}\n"
      "model: {name: transformer_seq2seq, d_model: 32, heads: 2, layers: 1, ff: 64}\n"
      "task: {name: generative_retrieval}\n"
      "optimizer: {name: adamw, lr: 0.003}\n"
      "scheduler: {name: constant, warmup_steps: 0}\n"
      "trainer: {name: incremental, epochs: 15, log_every: 100, eval_every: 100000, "
      "final_train_eval: false, tensorboard: false}\n"
      "incremental: {metric: hits@1, eval_on: test}\n"
      "compression:\n  - {name: replay, buffer: 200, ratio: 1.0}\n"
      "increments:\n" + incs);
  return path;
}

TEST_CASE("updates the run's data lacks are decoded with their increment's ID trie",
          "[gr][continual][slow]") {
  // Update 2 and 3's documents are not in the run data's corpus (updates: 1). Decoded with that
  // corpus's ID trie their IDs could never be emitted: Hits@1 exactly 0 on their test and
  // validation queries, even right after their own training (the default recipe's
  // runs/gr_updates). Each increment decodes with its own corpus's trie: the same matrix as
  // with the run's data holding the three updates.
  const std::string dir = sculpt::test::temp_dir("gr_updates_own_corpus");
  train(own_corpus_config(dir, "data1", 1));
  train(own_corpus_config(dir, "data3", 3));
  const auto a = read_json(fs::path(dir) / "data1" / "summary.json")["continual"];
  const auto b = read_json(fs::path(dir) / "data3" / "summary.json")["continual"];
  REQUIRE(a["slices"].size() == 4);
  for (size_t k = 1; k < 4; ++k) {
    INFO(a["slices"][k].dump());
    CHECK(a["slices"][k]["learned"].get<double>() > 0);
  }
  CHECK(a["accuracy_matrix"] == b["accuracy_matrix"]);
  CHECK(a["slices"] == b["slices"]);
  // The validation at the end of every increment decodes with the increment's trie too.
  std::map<int64_t, double> val_hits;  // increment -> its last validation hits@1
  std::istringstream lines(
      sculpt::test::read_text((fs::path(dir) / "data1" / "metrics.jsonl").string()));
  for (std::string line; std::getline(lines, line);) {
    const auto r = nlohmann::json::parse(line);
    if (r.value("split", "") == "val" && r.contains("hits@1"))
      val_hits[r.at("increment").get<int64_t>()] = r["hits@1"].get<double>();
  }
  for (int64_t i = 1; i < 4; ++i) {
    INFO(i);
    REQUIRE(val_hits.count(i) == 1);
    CHECK(val_hits[i] > 0);
  }
}

TEST_CASE("LoRA adapters compose with EWC and replay in an update", "[gr][continual][slow]") {
  // The base weights are frozen: EWC takes the Fisher of what trains only (it used to ask
  // autograd for the frozen weights' gradients and fail).
  const std::string dir = sculpt::test::temp_dir("gr_updates_lora");
  train(updates_config(dir, "lora", 1, "",
                       "  - {name: lora, rank: 4, alpha: 8}\n"
                       "  - {name: ewc, lambda: 1, samples: 32}\n"
                       "  - {name: replay, buffer: 60, ratio: 0.5}\n"));
  const auto s = read_json(fs::path(dir) / "lora" / "summary.json");
  CHECK(s["continual"]["slices"].size() == 2);
  CHECK(s["compression"][1]["summary"]["increments"] == 2);
  CHECK(s["compression"][2]["summary"]["buffer"] == 60);
}
