// Shared by the version-store tests (test_versions.cpp, test_versions_ab.cpp): the fastest
// incremental GR run that writes a store, trained once per test process.
#pragma once

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/support/process.h"

namespace sculpt::test::versions {

namespace fs = std::filesystem;

inline const std::string kSculpt = SCULPT_BIN;

inline nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

// The fastest GR sequence: 40 old documents, then 10 and 10 more new ones (new_docs: 10, then
// 20 of which the first 10 were seen), a 1-layer d_model 32 seq2seq, 3 epochs per increment.
inline std::string gr_config(const std::string& dir, const std::string& name,
                             const std::string& extra) {
  const std::string corpus =
      "docs: 40, topics: 4, vocab: 200, doc_len: 16, query_len: 8, "
      "index_stride: 4";
  const std::string path = dir + "/" + name + ".yaml";
  write_text(path,
             "run: {device: cpu, seed: 0, output_dir: " + dir + "/" + name +
                 "}\n"
                 "data: {name: gr_synthetic, " +
                 corpus +
                 ", new_docs: 20, documents: old, batch_size: 32,\n"
                 "       val_fraction: 0.1}\n"
                 "model: {name: transformer_seq2seq, d_model: 32, heads: 2, layers: 1, ff: 64}\n"
                 "task: {name: generative_retrieval, beam_size: 4, hits_at: [1, 4], mrr_at: 4}\n"
                 "optimizer: {name: adamw, lr: 0.003}\n"
                 "scheduler: {name: constant, warmup_steps: 0}\n"
                 "trainer: {name: incremental, epochs: 3, log_every: 100, eval_every: 100000,\n"
                 "          final_train_eval: false, keep_checkpoints: 100, tensorboard: false}\n"
                 "incremental: {metric: hits@1, eval_on: test, versions: true}\n"
                 "increments:\n"
                 "  - {name: old}\n"
                 "  - {name: new_a, data: {name: gr_synthetic, " +
                 corpus +
                 ", new_docs: 10, documents: new}}\n"
                 "  - {name: new_b, data: {name: gr_synthetic, " +
                 corpus + ", new_docs: 20, documents: new}}\n" + extra);
  return path;
}

// Trains `name` once per test process (the test cases of one process share it).
inline std::string trained(const std::string& name, const std::string& extra = "") {
  static std::map<std::string, std::string> done;
  if (done.count(name)) return done[name];
  const std::string dir = temp_dir("versions_" + name);
  const auto cfg = gr_config(dir, name, extra);
  auto r = run_process(kSculpt + " train " + cfg + " --log-level warn");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return done[name] = dir + "/" + name;
}

inline std::string versions_cmd(const std::string& store, const std::string& rest) {
  return kSculpt + " versions " + store + " " + rest;
}

inline int64_t file_bytes(const fs::path& p) {
  return static_cast<int64_t>(fs::file_size(p));
}

}  // namespace sculpt::test::versions
