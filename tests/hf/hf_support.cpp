#include "tests/hf/hf_support.h"

#include <catch2/catch.hpp>

#include <fstream>

#include "core/io/safetensors.h"
#include "core/models/hf/hf_config.h"
#include "tests/support/process.h"

namespace sculpt::test::hf {

namespace fs = std::filesystem;

const fs::path kFixtures = SCULPT_HF_FIXTURES;


const std::vector<Family>& families() {
  static const std::vector<Family> f = {
      {"gpt2", "tokens", "[embed, layer1, head]"},
      {"llama_gqa", "tokens", "[embed, layer1, head]"},
      {"qwen2", "tokens", "[embed, layer0, head]"},
      {"bert_mlm", "tokens", "[embed, layer1, head]"},
      {"roberta_cls", "classify", "[embed, layer1, head]"},
      {"t5_v1_1", "seq2seq", "[embed, enc0, enc_norm, dec0, head]"},
      {"vit", "images", "[embed, layer1, head]"}};
  return f;
}

const Family& family(const std::string& fixture) {
  for (const auto& f : families())
    if (f.fixture == fixture) return f;
  static Family other;
  other = {fixture, fixture.find("cls") != std::string::npos ? "classify" : "tokens", ""};
  return other;
}

// Little-endian uint16 ids in [4, vocab).
void write_tokens(const std::string& path, int64_t count, int64_t vocab, uint64_t seed) {
  std::ofstream out(path, std::ios::binary);
  for (int64_t i = 0; i < count; ++i) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    const auto id = static_cast<uint16_t>(4 + (seed >> 33) % static_cast<uint64_t>(vocab - 4));
    out.put(static_cast<char>(id & 0xff)).put(static_cast<char>(id >> 8));
  }
}

// jsonl lines of words w0..w29: text/label (classification) or query/target (seq2seq).
void write_jsonl(const std::string& path, bool seq2seq) {
  std::ofstream out(path);
  for (int i = 0; i < 64; ++i) {
    std::string text;
    for (int j = 0; j < 6; ++j) text += "w" + std::to_string((i * 7 + j * 3) % 30) + " ";
    if (seq2seq)
      out << nlohmann::json{{"query", text}, {"target", "d" + std::to_string(i % 9)}}.dump() << "\n";
    else
      out << nlohmann::json{{"text", text}, {"label", "c" + std::to_string(i % 4)}}.dump() << "\n";
  }
}

// `data:` and `task:` of a run on `f`'s fixture, writing the data files into `dir`.
std::string data_yaml(const Family& f, const std::string& dir) {
  const auto arch = models::hf::read_arch((kFixtures / f.fixture).string());
  if (f.kind == "tokens") {
    write_tokens(dir + "/train.bin", 16 * 48, std::min<int64_t>(arch.vocab, 400), 7);
    return "data: {name: tokens, file: '" + dir + "/train.bin', seq_len: 16, batch_size: 8, "
           "val_fraction: 0.25, prefetch: 0}\ntask: {name: language_model}\n";
  }
  if (f.kind == "images")
    return "data: {name: synthetic_images, samples: 64, channels: 3, size: 32, classes: 10, "
           "batch_size: 8, prefetch: 0}\n";
  write_jsonl(dir + "/train.jsonl", f.kind == "seq2seq");
  return "data: {name: jsonl, file: '" + dir + "/train.jsonl', batch_size: 8, val_fraction: 0.25, "
         "prefetch: 0}\n" + std::string(f.kind == "seq2seq" ? "task: {name: seq2seq}\n" : "");
}

std::string model_yaml(const Family& f, const std::string& extra) {
  std::string fresh = f.kind == "classify" ? ", fresh_head: true" : "";
  return "model: {name: hf, path: '" + (kFixtures / f.fixture).string() + "'" + fresh + extra + "}\n";
}

// `sculpt train` of `yaml` in a fresh folder; returns the run directory.
std::string train(const std::string& tag, const Family& f, const std::string& model,
                  const std::string& compression) {
  const std::string dir = temp_dir("hf_" + tag + "_" + f.fixture);
  const std::string yaml = "run: {name: r, device: cpu, seed: 1, output_dir: '" + dir + "/run'}\n" +
                           model + data_yaml(f, dir) +
                           "optimizer: {name: adamw, lr: 0.001}\n"
                           "trainer: {max_steps: 3, log_every: 1, eval_every: 0, tensorboard: false}\n" +
                           (compression.empty() ? "" : "compression:\n" + compression);
  write_text(dir + "/run.yaml", yaml);
  auto r = run_process(std::string(SCULPT_BIN) + " train " + dir + "/run.yaml");
  INFO(yaml << "\n" << r.out << r.err);
  CHECK(r.exit_code == 0);
  return r.exit_code == 0 ? dir + "/run" : "";
}

std::map<std::string, at::Tensor> weights(const std::string& run) {
  std::map<std::string, at::Tensor> out;
  for (auto& [k, t] : io::load_safetensors(run + "/model.safetensors")) out[k] = t;
  return out;
}

nlohmann::json summary(const std::string& run) {
  return nlohmann::json::parse(read_text(run + "/summary.json"));
}


}  // namespace sculpt::test::hf
