// Each task trains end to end from YAML on data files written here, and reaches a level only
// learning can reach: a seq2seq transformer reverses digit strings, a language model learns a
// periodic stream, a transformer classifies sentences, an MLP fits a linear function.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>
#include <random>

#include "tests/support/process.h"

namespace {
const std::string kSculpt = SCULPT_BIN;

nlohmann::json train(const std::string& dir, const std::string& yaml) {
  sculpt::test::write_text(dir + "/c.yaml", yaml + "run: {device: cpu, seed: 0, output_dir: " +
                                                dir + "/run}\n");
  auto r = sculpt::test::run_process(kSculpt + " train " + dir + "/c.yaml --log-level warn");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return nlohmann::json::parse(sculpt::test::read_text(dir + "/run/summary.json"))["final"];
}
}  // namespace

TEST_CASE("transformer_seq2seq learns to reverse digit strings; beams cover the target",
          "[tasks][slow]") {
  const std::string dir = sculpt::test::temp_dir("reverse");
  std::mt19937 rng(0);
  std::string lines;
  for (int i = 0; i < 1500; ++i) {
    std::vector<int> q(2 + rng() % 4);
    for (auto& d : q) d = static_cast<int>(rng() % 10);
    std::string query, target;
    for (size_t k = 0; k < q.size(); ++k) {
      query += (k ? " " : "") + std::to_string(q[k]);
      target += (k ? " " : "") + std::to_string(q[q.size() - 1 - k]);
    }
    lines += nlohmann::json{{"query", query}, {"target", target}}.dump() + "\n";
  }
  sculpt::test::write_text(dir + "/reverse.jsonl", lines);
  auto m = train(dir,
                 "data: {name: jsonl, file: " + dir +
                     "/reverse.jsonl, batch_size: 64, val_fraction: 0.1}\n"
                     "model: {name: transformer_seq2seq, d_model: 64, heads: 4, layers: 2, ff: 128}\n"
                     "task: {name: seq2seq, beam_size: 3}\n"
                     "optimizer: {name: adamw, lr: 0.003}\n"
                     "scheduler: {name: cosine, warmup_steps: 30}\n"
                     "trainer: {epochs: 8, log_every: 50, best_metric: exact_match}\n");
  auto val = m["val"];
  CHECK(val["exact_match"].get<double>() > 0.85);  // chance: 10^-length
  CHECK(val["token_accuracy"].get<double>() > 0.95);
  CHECK(val["hits@3"].get<double>() >= val["hits@1"].get<double>());
  CHECK(val["hits@3"].get<double>() > 0.95);
}

TEST_CASE("transformer_lm learns a periodic token stream", "[tasks]") {
  const std::string dir = sculpt::test::temp_dir("periodic");
  const int period[] = {5, 9, 2, 7, 7, 3, 11, 5, 1};  // period 9; the next token needs context
  std::string bytes;
  for (int i = 0; i < 9 * 800; ++i) {
    bytes += char(period[i % 9]);
    bytes += char(0);
  }
  sculpt::test::write_text(dir + "/tokens.bin", bytes);
  auto m = train(dir, "data: {name: tokens, file: " + dir +
                          "/tokens.bin, seq_len: 24, batch_size: 32}\n"
                          "model: {name: transformer_lm, d_model: 32, heads: 2, layers: 2}\n"
                          "task: {name: language_model}\n"
                          "optimizer: {name: adamw, lr: 0.003}\n"
                          "trainer: {epochs: 3, best_metric: perplexity, best_mode: min}\n");
  CHECK(m["val"]["perplexity"].get<double>() < 1.3);  // 12 token ids: chance is ~12
  CHECK(m["val"]["accuracy"].get<double>() > 0.9);
}

TEST_CASE("transformer_encoder classifies sentences by the words in them", "[tasks]") {
  const std::string dir = sculpt::test::temp_dir("sentences");
  std::mt19937 rng(1);
  const char* filler[] = {"the", "a", "film", "was", "and", "plot", "it", "very", "quite"};
  const char* cue[][2] = {{"good", "great"}, {"bad", "awful"}};
  std::string lines;
  for (int i = 0; i < 1200; ++i) {
    const int label = static_cast<int>(rng() % 2);
    std::string text;
    const int len = 4 + static_cast<int>(rng() % 6), at = static_cast<int>(rng() % len);
    for (int k = 0; k < len; ++k)
      text += std::string(k ? " " : "") + (k == at ? cue[label][rng() % 2] : filler[rng() % 9]);
    lines += nlohmann::json{{"text", text}, {"label", label ? "negative" : "positive"}}.dump() +
             "\n";
  }
  sculpt::test::write_text(dir + "/reviews.jsonl", lines);
  auto m = train(dir, "data: {name: jsonl, file: " + dir + "/reviews.jsonl, batch_size: 32}\n"
                          "model: {name: transformer_encoder, d_model: 32, heads: 2, layers: 1}\n"
                          "optimizer: {name: adamw, lr: 0.003}\n"
                          "trainer: {epochs: 3}\n");
  CHECK(m["val"]["accuracy"].get<double>() > 0.95);
}

TEST_CASE("regression: an MLP fits a linear function of csv columns", "[tasks]") {
  const std::string dir = sculpt::test::temp_dir("linear");
  std::mt19937 rng(2);
  std::normal_distribution<double> n01;
  std::string csv = "x1,x2,x3,y\n";
  for (int i = 0; i < 2000; ++i) {
    const double a = n01(rng), b = n01(rng), c = n01(rng);
    csv += std::to_string(a) + "," + std::to_string(b) + "," + std::to_string(c) + "," +
           std::to_string(2 * a - b + 0.5 * c + 1) + "\n";
  }
  sculpt::test::write_text(dir + "/linear.csv", csv);
  auto m = train(dir, "data: {name: csv, file: " + dir +
                          "/linear.csv, target: regression, batch_size: 32}\n"
                          "model: {name: mlp, hidden: [32]}\n"
                          "task: {name: regression}\n"
                          "optimizer: {name: adam, lr: 0.01}\n"
                          "trainer: {epochs: 5, best_metric: loss, best_mode: min}\n");
  // Var(y) = 4 + 1 + 0.25 = 5.25.
  CHECK(m["val"]["loss"].get<double>() < 0.05);
  CHECK(m["val"]["mae"].get<double>() < 0.2);
}
