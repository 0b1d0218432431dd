// Bad tokenizer files and bad text: errors name the file, the JSON path, the value and what
// is supported; `sculpt tokenize` exits 2 with the file, line and byte offset.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/config/errors.h"
#include "core/text/tokenizer.h"
#include "tests/support/process.h"

using Catch::Matchers::Contains;

namespace {

const std::string kDir = SCULPT_TOKENIZER_FIXTURES;

// The fixture's bert tokenizer.json with `edit` applied, written to a fresh directory.
std::string edited_bert(const std::string& tag, void (*edit)(nlohmann::json&)) {
  std::ifstream in(kDir + "/bert/tokenizer.json");
  REQUIRE(in);
  auto j = nlohmann::json::parse(in);
  edit(j);
  const std::string dir = sculpt::test::temp_dir("tok-" + tag);
  sculpt::test::write_text(dir + "/tokenizer.json", j.dump());
  return dir;
}

std::string error_of(const std::string& path) {
  try {
    sculpt::text::load_tokenizer(path);
  } catch (const sculpt::config::ConfigError& e) {
    return e.what();
  }
  FAIL("no ConfigError for " << path);
  return "";
}

}  // namespace

TEST_CASE("an unsupported normalizer names the file, JSON path, value and supported list",
          "[text]") {
  const auto dir = edited_bert("norm", [](nlohmann::json& j) {
    j["normalizer"] = {{"type", "Sequence"},
                       {"normalizers", {{{"type", "NFC"}}, {{"type", "Precompiled2"}}}}};
  });
  const auto msg = error_of(dir);
  CHECK_THAT(msg, Contains(dir + "/tokenizer.json"));
  CHECK_THAT(msg, Contains("normalizer.normalizers[1].type"));
  CHECK_THAT(msg, Contains("'Precompiled2'"));
  CHECK_THAT(msg, Contains("BertNormalizer"));
}

TEST_CASE("a malformed Precompiled character map names its JSON path", "[text]") {
  const auto not_base64 = error_of(edited_bert("pc-b64", [](nlohmann::json& j) {
    j["normalizer"] = {
        {"type", "Sequence"},
        {"normalizers", {{{"type", "Precompiled"}, {"precompiled_charsmap", "not base64!"}}}}};
  }));
  CHECK_THAT(not_base64, Contains("normalizer.normalizers[0].precompiled_charsmap"));
  CHECK_THAT(not_base64, Contains("not valid base64"));
  // A trie size (0xffff) larger than the blob.
  const auto too_short = error_of(edited_bert("pc-size", [](nlohmann::json& j) {
    j["normalizer"] = {{"type", "Precompiled"}, {"precompiled_charsmap", "//8AAAAA"}};
  }));
  CHECK_THAT(too_short, Contains("normalizer.precompiled_charsmap"));
  CHECK_THAT(too_short, Contains("not a SentencePiece precompiled character map"));
  const auto missing = error_of(edited_bert("pc-missing", [](nlohmann::json& j) {
    j["normalizer"] = {{"type", "Precompiled"}};
  }));
  CHECK_THAT(missing, Contains("precompiled_charsmap"));
}

TEST_CASE("an unsupported model type and pre-tokenizer are named with the supported list",
          "[text]") {
  const auto model =
      error_of(edited_bert("model", [](nlohmann::json& j) { j["model"]["type"] = "CharLevel"; }));
  CHECK_THAT(model, Contains("model.type"));
  CHECK_THAT(model, Contains("'CharLevel'"));
  CHECK_THAT(model, Contains("WordPiece"));
  const auto pre = error_of(edited_bert("pre", [](nlohmann::json& j) {
    j["pre_tokenizer"] = {{"type", "UnicodeScripts"}};
  }));
  CHECK_THAT(pre, Contains("pre_tokenizer.type"));
  CHECK_THAT(pre, Contains("Metaspace"));
}

TEST_CASE("missing and malformed tokenizer files are ConfigErrors naming the file", "[text]") {
  CHECK_THAT(error_of("/nonexistent/tokenizer-dir"), Contains("/nonexistent/tokenizer-dir"));
  const std::string dir = sculpt::test::temp_dir("tok-bad");
  sculpt::test::write_text(dir + "/tokenizer.json", "{\"model\": {\"type\": \"BPE\",");
  const auto msg = error_of(dir);
  CHECK_THAT(msg, Contains(dir + "/tokenizer.json"));
  CHECK_THAT(msg, Contains("malformed JSON"));
  const std::string empty = sculpt::test::temp_dir("tok-empty");
  CHECK_THAT(error_of(empty), Contains("tokenizer.json"));
  sculpt::test::write_text(empty + "/broken.model", "not a protobuf");
  CHECK_THAT(error_of(empty + "/broken.model"), Contains("broken.model"));
}

TEST_CASE("invalid UTF-8 is rejected with its byte offset", "[text]") {
  const auto tok = sculpt::text::load_tokenizer(kDir + "/gpt2");
  try {
    tok->encode("ok \xC3\x28 bad");
    FAIL("no error");
  } catch (const sculpt::UserError& e) {
    CHECK_THAT(e.what(), Contains("byte offset 3"));
  }
}

TEST_CASE("sculpt tokenize exits 2 naming the file, line and byte of invalid UTF-8", "[text]") {
  const std::string dir = sculpt::test::temp_dir("tok-cli");
  sculpt::test::write_text(dir + "/in.txt", "good line\nsecond \xFF line\n");
  const std::string bin = SCULPT_BIN;
  auto r =
      sculpt::test::run_process(bin + " tokenize " + dir + "/in.txt --tokenizer " + kDir + "/gpt2");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Contains(dir + "/in.txt:2"));
  CHECK_THAT(r.err, Contains("byte 7"));
  r = sculpt::test::run_process(bin + " tokenize " + dir + "/missing.txt --tokenizer " + kDir +
                                "/gpt2");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Contains("missing.txt"));
  sculpt::test::write_text(dir + "/tokenizer.json", "[1, 2");
  r = sculpt::test::run_process(bin + " tokenize " + dir + "/in.txt --tokenizer " + dir);
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Contains("tokenizer.json"));
}
