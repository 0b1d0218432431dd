// A user points model.path at a Hugging Face checkpoint folder and runs `sculpt train`: a good
// folder trains; a broken one (each case breaks a fresh copy of a fixture from
// tests/hf/make_fixtures.py) exits 2 with one message naming the file and the tensor or key,
// and the run directory gets no weights and no checkpoints.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/io/safetensors.h"
#include "core/models/hf/hf_config.h"
#include "tests/support/process.h"

namespace fs = std::filesystem;
using Catch::Contains;
using sculpt::test::run_process;
using sculpt::test::write_text;

namespace {

const fs::path kFixtures = SCULPT_HF_FIXTURES;
const std::string kSculpt = SCULPT_BIN;

// One broken copy: the checkpoint folder, the run directory and the config that trains on it.
struct Case {
  std::string dir, ckpt, out, config;
  std::string file(const std::string& name) const { return ckpt + "/" + name; }
  std::string weights() const { return file("model.safetensors"); }
  std::string config_json() const { return file("config.json"); }
};

// A fresh copy of `fixture` beside a token file (ids below every fixture's vocabulary of 1000,
// seq_len 16, 12 rows) and a one-epoch language-model config that trains on it on the CPU.
Case prepare(const std::string& fixture = "llama_gqa") {
  INFO("the fixtures are written by tests/hf/make_fixtures.py (ctest runs it first)");
  REQUIRE(fs::is_directory(kFixtures / fixture));
  Case c;
  c.dir = sculpt::test::temp_dir("hf_errors");
  c.ckpt = c.dir + "/ckpt";
  c.out = c.dir + "/out";
  c.config = c.dir + "/run.yaml";
  fs::copy(kFixtures / fixture, c.ckpt, fs::copy_options::recursive);
  std::string tokens;
  for (uint32_t i = 0; i < 16 * 12 + 1; ++i) {
    const uint32_t id = (i * 37 + 11) % 997;
    tokens.push_back(static_cast<char>(id & 0xff));
    tokens.push_back(static_cast<char>(id >> 8));
  }
  write_text(c.dir + "/tokens.bin", tokens);
  write_text(c.config, "run:\n  name: hf_errors\n  output_dir: " + c.out +
                           "\n  device: cpu\n"
                           "data:\n  name: tokens\n  file: " + c.dir + "/tokens.bin\n"
                           "  seq_len: 16\n  batch_size: 4\n  val_fraction: 0.25\n"
                           "model:\n  name: hf\n  path: " + c.ckpt + "\n"
                           "task:\n  name: language_model\n"
                           "optimizer:\n  name: adamw\n  lr: 0.001\n"
                           "trainer:\n  epochs: 1\n  log_every: 1\n");
  return c;
}

void edit_config(const Case& c, const std::function<void(nlohmann::json&)>& edit) {
  std::ifstream in(c.config_json());
  nlohmann::json j = nlohmann::json::parse(in);
  edit(j);
  write_text(c.config_json(), j.dump(2));
}

// Rewrites model.safetensors with Sculpt's own reader and writer.
void edit_weights(const Case& c, const std::function<void(sculpt::io::NamedTensors&)>& edit) {
  sculpt::io::NamedTensors tensors = sculpt::io::load_safetensors(c.weights());
  edit(tensors);
  sculpt::io::save_safetensors(c.weights(), tensors);
}

at::Tensor& tensor(sculpt::io::NamedTensors& tensors, const std::string& name) {
  auto it = std::find_if(tensors.begin(), tensors.end(), [&](auto& e) { return e.first == name; });
  INFO("the fixture has no tensor " << name);
  REQUIRE(it != tensors.end());
  return it->second;
}

size_t count(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

// `sculpt train` on the broken copy exits 2 with one error message holding every one of
// `parts` and writes no weights and no checkpoints: the run directory holds at most the
// resolved config and the log it opens before the model is built.
void expect_refused(const Case& c, const std::vector<std::string>& parts) {
  const auto r = run_process(kSculpt + " train " + c.config);
  INFO("stderr: " << r.err << "\nstdout: " << r.out);
  CHECK(r.exit_code == 2);
  CHECK(count(r.err, "sculpt: error: ") == 1);
  CHECK_THAT(r.err, !Contains("terminate") && !Contains("failed"));
  for (const auto& p : parts) CHECK_THAT(r.err, Contains(p));
  CHECK_FALSE(fs::exists(c.out + "/model.safetensors"));
  CHECK_FALSE(fs::exists(c.out + "/checkpoints"));
  if (fs::exists(c.out))
    for (const auto& e : fs::directory_iterator(c.out)) {
      const std::string name = e.path().filename().string();
      INFO("written to the run directory: " << name);
      CHECK((name == "config.yaml" || name == "log.txt"));
    }
}

}  // namespace

TEST_CASE("a checkpoint folder as model.path trains through the CLI, single file and sharded",
          "[hf]") {
  for (const char* fixture : {"llama_gqa", "llama_sharded"}) {
    INFO("fixture " << fixture);
    const Case c = prepare(fixture);
    const auto r = run_process(kSculpt + " train " + c.config);
    INFO("stderr: " << r.err);
    CHECK(r.exit_code == 0);
    CHECK_THAT(r.err, Contains("model hf: "));
    CHECK(fs::exists(c.out + "/model.safetensors"));
    CHECK(fs::exists(c.out + "/metrics.jsonl"));
  }
}

TEST_CASE("a folder without config.json exits 2 naming the file", "[hf]") {
  const Case c = prepare();
  fs::remove(c.config_json());
  expect_refused(c, {c.config_json() + ": missing"});
}

TEST_CASE("a folder without weights exits 2 naming both files it looked for", "[hf]") {
  const Case c = prepare();
  fs::remove(c.weights());
  expect_refused(c, {c.ckpt + ": no weights", "model.safetensors", "model.safetensors.index.json"});
}

TEST_CASE("an unsupported model_type exits 2 listing the supported ones", "[hf]") {
  const Case c = prepare();
  edit_config(c, [](nlohmann::json& j) { j["model_type"] = "falcon"; });
  std::string list;
  for (const auto& t : sculpt::models::hf::supported_model_types())
    list += (list.empty() ? "" : ", ") + t;
  expect_refused(c,
                 {c.config_json(), "model_type 'falcon' is not supported", "supported: " + list});
}

TEST_CASE("a tensor the model needs that the file lacks exits 2 naming it", "[hf]") {
  const Case c = prepare();
  const std::string name = "model.layers.1.mlp.up_proj.weight";
  edit_weights(c, [&](sculpt::io::NamedTensors& t) {
    t.erase(std::remove_if(t.begin(), t.end(), [&](const auto& e) { return e.first == name; }),
            t.end());
  });
  expect_refused(c, {c.ckpt, "lacks tensors the llama model needs: " + name});
}

TEST_CASE("a tensor the model does not use exits 2 naming it", "[hf]") {
  const Case c = prepare();
  const std::string name = "model.layers.7.mlp.up_proj.weight";
  edit_weights(c, [&](sculpt::io::NamedTensors& t) { t.emplace_back(name, at::zeros({4, 4})); });
  expect_refused(c, {c.ckpt, "does not use: " + name});
}

TEST_CASE("a tensor of the wrong shape exits 2 naming it and both shapes", "[hf]") {
  const Case c = prepare();
  edit_weights(c, [](sculpt::io::NamedTensors& t) {
    tensor(t, "model.norm.weight") = at::ones({65});
  });
  expect_refused(c, {c.weights() + ": tensor 'model.norm.weight' has shape [65]", "needs [64]",
                     c.config_json()});
}

TEST_CASE("a weight stored as an integer dtype exits 2 naming the tensor and dtype", "[hf]") {
  const std::string weight = "model.layers.0.self_attn.k_proj.weight";
  for (auto [type, name] : {std::pair{at::kLong, "I64"}, std::pair{at::kInt, "I32"}}) {
    const Case c = prepare();
    edit_weights(c, [&, type = type](sculpt::io::NamedTensors& t) {
      at::Tensor& w = tensor(t, weight);
      w = w.to(type);
    });
    expect_refused(c, {c.weights() + ": tensor '" + weight + "' has dtype " + name});
  }
}

TEST_CASE("a truncated safetensors file exits 2 naming the file and the cut tensor", "[hf]") {
  const Case c = prepare();
  fs::resize_file(c.weights(), fs::file_size(c.weights()) / 2);
  expect_refused(c, {c.weights() + ": tensor '", "(file truncated)"});
}

TEST_CASE("a model.safetensors that is not safetensors exits 2 naming the file", "[hf]") {
  std::string bad_json(8, '\0');
  bad_json[0] = 24;  // a plausible header length, then 24 bytes that are not JSON
  bad_json += "<html>not a header</html";
  const std::vector<std::pair<std::string, std::string>> garbage = {
      {std::string(4096, '\xab'), "(truncated or not safetensors)"},
      {bad_json + std::string(64, 'x'), "malformed safetensors header"}};
  for (const auto& [bytes, says] : garbage) {
    const Case c = prepare();
    write_text(c.weights(), bytes);
    expect_refused(c, {c.weights() + ": ", says});
  }
}

TEST_CASE("an index naming a missing shard exits 2 naming the index, shard and tensor",
          "[hf]") {
  const Case c = prepare("llama_sharded");
  const std::string shard = "model-00002-of-00003.safetensors";
  REQUIRE(fs::remove(c.file(shard)));
  expect_refused(c, {c.file("model.safetensors.index.json") + ": names the shard '" + shard +
                         "' (for tensor 'model.", "does not exist in " + c.ckpt});
}

TEST_CASE("a config.json that is not JSON exits 2 naming the file", "[hf]") {
  const Case c = prepare();
  write_text(c.config_json(), "{\"model_type\": \"llama\", hidden_size = 64}\n");
  expect_refused(c, {c.config_json() + ": not valid JSON"});
}

TEST_CASE("a config.json key of the wrong type exits 2 naming the key", "[hf]") {
  const Case c = prepare();
  edit_config(c, [](nlohmann::json& j) { j["hidden_size"] = "big"; });
  expect_refused(c, {c.config_json() + ": key 'hidden_size' must be an integer, not \"big\""});
}

TEST_CASE("a size of 0 or less in config.json exits 2 naming the key", "[hf]") {
  for (const char* key : {"head_dim", "max_position_embeddings", "num_key_value_heads"}) {
    const Case c = prepare();
    edit_config(c, [&](nlohmann::json& j) { j[key] = -16; });
    expect_refused(c, {c.config_json() + ": key '" + key + "' must be >= 1, not -16"});
  }
}

TEST_CASE("num_key_value_heads that do not divide num_attention_heads exit 2", "[hf]") {
  const Case c = prepare();
  edit_config(c, [](nlohmann::json& j) { j["num_key_value_heads"] = 3; });
  expect_refused(c, {c.config_json() + ": key 'num_key_value_heads': 3 does not divide "
                                       "num_attention_heads 4"});
}

TEST_CASE("an unsupported rope_type exits 2 naming the key and the supported types", "[hf]") {
  const Case c = prepare();
  edit_config(c, [](nlohmann::json& j) { j["rope_parameters"]["rope_type"] = "yarn"; });
  expect_refused(c, {c.config_json() + ": key 'rope_parameters': rope type 'yarn' is not "
                                       "supported; supported: default, linear, llama3"});
}

TEST_CASE("a mistyped rope_parameters entry exits 2 naming the file and the nested key",
          "[hf]") {
  const std::vector<std::pair<std::function<void(nlohmann::json&)>, std::string>> cases = {
      {[](nlohmann::json& r) { r["rope_type"] = 5; },
       ": key 'rope_parameters.rope_type' must be a string, not 5"},
      {[](nlohmann::json& r) { r = {{"rope_type", "linear"}, {"factor", "x"}}; },
       ": key 'rope_parameters.factor' must be a number, not \"x\""}};
  for (const auto& [edit, says] : cases) {
    const Case c = prepare();
    edit_config(c, [&edit = edit](nlohmann::json& j) { edit(j["rope_parameters"]); });
    expect_refused(c, {c.config_json() + says});
  }
}
