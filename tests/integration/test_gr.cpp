// Generative retrieval end to end: a small transformer_seq2seq trained from YAML on a
// gr_synthetic corpus decodes its test queries' document IDs (constrained beam search) far
// above chance; a malformed gr_jsonl file stops `sculpt train` with exit code 2 naming the
// file and line.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "tests/support/process.h"

namespace {
const std::string kSculpt = SCULPT_BIN;
}  // namespace

TEST_CASE("a tiny generative-retrieval model learns to decode document IDs", "[gr][slow]") {
  const std::string dir = sculpt::test::temp_dir("gr_e2e");
  sculpt::test::write_text(
      dir + "/c.yaml",
      "run: {device: cpu, seed: 0, output_dir: " + dir + "/run}\n"
      "data: {name: gr_synthetic, docs: 100, topics: 4, vocab: 300, doc_len: 16, query_len: 8,\n"
      "       batch_size: 32, val_fraction: 0.1}\n"
      "model: {name: transformer_seq2seq, d_model: 64, heads: 4, layers: 1, ff: 128}\n"
      "task: {name: generative_retrieval}\n"
      "optimizer: {name: adamw, lr: 0.003}\n"
      "scheduler: {name: cosine, warmup_steps: 30}\n"
      "trainer: {epochs: 40, log_every: 100, eval_every: 100000, final_train_eval: false,\n"
      "          best_metric: hits@1}\n");
  auto r = sculpt::test::run_process(kSculpt + " train " + dir + "/c.yaml --log-level warn");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto summary = nlohmann::json::parse(sculpt::test::read_text(dir + "/run/summary.json"));
  auto test = summary["final"]["test"];
  INFO(test.dump());
  // Chance is 1/100 for Hits@1 and 10/100 for Hits@10.
  CHECK(test["hits@1"].get<double>() > 0.4);
  CHECK(test["hits@10"].get<double>() >= test["hits@1"].get<double>());
  CHECK(test["mrr@10"].get<double>() >= test["hits@1"].get<double>());
  CHECK(test["mrr@10"].get<double>() <= test["hits@10"].get<double>());
  CHECK_FALSE(summary["final"].contains("train"));  // final_train_eval: false
}

TEST_CASE("sculpt train exits 2 on a malformed gr_jsonl file, naming the file and line",
          "[gr]") {
  const std::string dir = sculpt::test::temp_dir("gr_bad");
  sculpt::test::write_text(dir + "/docs.jsonl", "{\"doc_id\": \"a\", \"text\": \"x y\"}\n"
                                                "{\"doc_id\": \"b\", \"text\": \"z\"}\n");
  sculpt::test::write_text(dir + "/q.jsonl", "{\"query\": \"x\", \"doc_id\": \"a\"}\n"
                                             "{\"query\": \"z\" \"doc_id\": \"b\"}\n");
  sculpt::test::write_text(
      dir + "/c.yaml", "run: {device: cpu, output_dir: " + dir + "/run}\n"
                       "data: {name: gr_jsonl, docs_file: " + dir + "/docs.jsonl, queries_file: " +
                           dir + "/q.jsonl}\n"
                           "model: {name: transformer_seq2seq, d_model: 16, heads: 2}\n"
                           "task: {name: generative_retrieval}\n");
  auto r = sculpt::test::run_process(kSculpt + " train " + dir + "/c.yaml");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("q.jsonl:2") && Catch::Contains("not valid JSON"));
  // A file that does not exist is named too.
  auto r2 = sculpt::test::run_process(kSculpt + " train " + dir + "/c.yaml data.docs_file=" + dir +
                                      "/nope.jsonl");
  CHECK(r2.exit_code == 2);
  CHECK_THAT(r2.err, Catch::Contains("nope.jsonl"));
}
