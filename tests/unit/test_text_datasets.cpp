// tokens and jsonl on small files written here: the token windows, the tokenizer, vocabulary
// order and ids, the padding layout of classification and seq2seq rows, and every malformed
// file named in the error (with the line where there is one).
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include "core/config/config.h"
#include "core/data/dataset.h"
#include "core/error.h"
#include "tests/support/load_dataset.h"
#include "tests/support/process.h"

namespace token = sculpt::data::token;
using sculpt::data::DataPart;
using sculpt::test::load_dataset;
using sculpt::test::write_text;
using Strings = std::vector<std::string>;

namespace {
// Little-endian ids of `width` bytes each.
std::string token_bytes(const std::vector<uint32_t>& ids, int width) {
  std::string b;
  for (uint32_t id : ids)
    for (int k = 0; k < width; ++k) b += static_cast<char>((id >> (8 * k)) & 0xff);
  return b;
}

torch::Tensor ids(std::vector<int64_t> v) {
  return torch::tensor(v, torch::kLong);
}

// The UserError message of loading `yaml`'s part, or "no error".
std::string error_of(const std::string& yaml, DataPart part = DataPart::train) {
  try {
    load_dataset(yaml, part);
  } catch (const sculpt::UserError& e) {
    return e.what();
  }
  return "no error";
}
}  // namespace

TEST_CASE("tokens cuts the file into windows of seq_len whose targets are the next tokens", "[data][tokens]") {
  auto dir = sculpt::test::temp_dir("tokens");
  std::vector<uint32_t> train(23), test{3, 1, 4, 1, 5, 9};
  for (uint32_t i = 0; i < 23; ++i) train[i] = i;  // 5 windows of 4 (+1 target), 2 left
  write_text(dir + "/train.bin", token_bytes(train, 2));
  write_text(dir + "/test.bin", token_bytes(test, 2));
  const std::string yaml =
      "{name: tokens, seq_len: 4, file: " + dir + "/train.bin, test_file: " + dir + "/test.bin}";
  auto d = load_dataset(yaml, DataPart::train);
  REQUIRE(d->inputs().sizes() == torch::IntArrayRef({5, 4}));
  CHECK(d->inputs().dtype() == torch::kLong);
  CHECK(torch::equal(d->inputs()[1], ids({4, 5, 6, 7})));
  CHECK(torch::equal(d->targets()[1], ids({5, 6, 7, 8})));
  CHECK(torch::equal(d->targets()[4], ids({17, 18, 19, 20})));
  CHECK(d->spec().vocab_size == 23);  // max token + 1
  CHECK(d->spec().num_classes == 0);
  CHECK(d->spec().input_shape == std::vector<int64_t>{4});
  auto t = load_dataset(yaml, DataPart::test);
  CHECK(t->spec().vocab_size == 23);  // from the train file
  CHECK(torch::equal(t->inputs(), ids({3, 1, 4, 1}).view({1, 4})));
  CHECK(torch::equal(t->targets(), ids({1, 4, 1, 5}).view({1, 4})));
  CHECK(load_dataset("{name: tokens, file: " + dir + "/train.bin}", DataPart::test) == nullptr);
}

TEST_CASE("tokens reads uint32 ids, gzip or raw", "[data][tokens]") {
  auto dir = sculpt::test::temp_dir("tokens32");
  std::vector<uint32_t> v{70000, 1, 2, 65536, 99999, 0};
  write_text(dir + "/a.bin", token_bytes(v, 4));
  write_text(dir + "/b.bin", token_bytes(v, 4));
  REQUIRE(sculpt::test::run_process("gzip -f " + dir + "/b.bin").exit_code == 0);
  for (const char* file : {"/a.bin", "/b.bin.gz"}) {
    auto d = load_dataset(
        "{name: tokens, dtype: uint32, seq_len: 2, vocab_size: 100000, file: " + dir + file + "}",
        DataPart::train);
    REQUIRE(d->size() == 2);
    CHECK(torch::equal(d->inputs(), ids({70000, 1, 2, 65536}).view({2, 2})));
    CHECK(torch::equal(d->targets(), ids({1, 2, 65536, 99999}).view({2, 2})));
    CHECK(d->spec().vocab_size == 100000);
  }
}

TEST_CASE("bad token files are named with the size, the count or the token position",
          "[data][tokens]") {
  auto dir = sculpt::test::temp_dir("tokens-bad");
  write_text(dir + "/odd.bin", std::string(7, '\1'));
  CHECK_THAT(
      error_of("{name: tokens, file: " + dir + "/odd.bin}"),
      Catch::Contains(dir + "/odd.bin: size 7 bytes is not a multiple of the token width 2"));
  write_text(dir + "/six.bin", std::string(6, '\1'));
  CHECK_THAT(
      error_of("{name: tokens, dtype: uint32, file: " + dir + "/six.bin}"),
      Catch::Contains(dir + "/six.bin: size 6 bytes is not a multiple of the token width 4"));
  CHECK_THAT(error_of("{name: tokens, seq_len: 3, file: " + dir + "/six.bin}"),
             Catch::Contains(dir + "/six.bin: 3 tokens, fewer than seq_len + 1 = 4"));
  write_text(dir + "/big.bin", token_bytes({1, 2, 3, 50, 4}, 2));
  CHECK_THAT(error_of("{name: tokens, seq_len: 2, vocab_size: 10, file: " + dir + "/big.bin}"),
             Catch::Contains(dir + "/big.bin: token 50 at position 3 is not below vocab_size 10"));
  // The test part is checked against the train file's vocabulary.
  write_text(dir + "/train.bin", token_bytes({1, 2, 3, 4}, 2));
  CHECK_THAT(error_of("{name: tokens, seq_len: 2, file: " + dir + "/train.bin, test_file: " + dir +
                          "/big.bin}",
                      DataPart::test),
             Catch::Contains(dir + "/big.bin: token 50 at position 3 is not below vocab_size 5"));
}

TEST_CASE("split_words: lowercased words with punctuation apart, or UTF-8 characters",
          "[data][jsonl]") {
  using sculpt::data::split_words;
  CHECK(split_words("  Hello, World!  it's\tgr\xC3\xBCn ", false) ==
        Strings{"hello", ",", "world", "!", "it", "'", "s", "gr\xC3\xBCn"});
  CHECK(split_words("", false).empty());
  CHECK(split_words("Ab \xC3\xBC!", true) == Strings{"A", "b", " ", "\xC3\xBC", "!"});
  CHECK(split_words("\xC3x", true) == Strings{"\xC3", "x"});  // a broken sequence: bytes apart
}

TEST_CASE("jsonl text/label: vocabulary by count then A-Z, padded rows, sorted label ids",
          "[data][jsonl]") {
  auto dir = sculpt::test::temp_dir("jsonl");
  write_text(dir + "/train.jsonl",
             "{\"text\": \"the cat sat\", \"label\": \"pos\"}\n"
             "\n"
             "{\"text\": \"The dog\", \"label\": \"neg\"}\n"
             "{\"text\": \"a cat, the end\", \"label\": \"pos\"}\n");
  write_text(dir + "/test.jsonl", "{\"text\": \"cat bird the a b c d\", \"label\": \"neg\"}\n");
  const std::string yaml =
      "{name: jsonl, file: " + dir + "/train.jsonl, test_file: " + dir + "/test.jsonl";
  auto d = load_dataset(yaml + "}", DataPart::train);
  // the: 3, cat: 2, then once each in byte order: ",", a, dog, end, sat.
  const Strings vocab{"<pad>", "<unk>", "<bos>", "<eos>", "the", "cat",
                      ",",     "a",     "dog",   "end",   "sat"};
  CHECK(d->spec().vocab == vocab);
  CHECK(d->spec().vocab_size == 11);
  CHECK(d->spec().num_classes == 2);
  CHECK(d->spec().source_len == 0);
  CHECK(d->spec().input_shape == std::vector<int64_t>{5});  // "a cat , the end"
  CHECK(torch::equal(d->inputs(), ids({4, 5, 10, 0, 0,      //
                                       4, 8, 0, 0, 0,       //
                                       7, 5, 6, 4, 9})
                                      .view({3, 5})));
  CHECK(torch::equal(d->targets(), ids({1, 0, 1})));  // neg = 0, pos = 1
  // The test part uses the train vocabulary (bird, b, ... are unknown) and length (cut at 5).
  auto t = load_dataset(yaml + "}", DataPart::test);
  CHECK(t->spec().vocab == vocab);
  CHECK(torch::equal(t->inputs(), ids({5, token::unk, 4, 7, token::unk}).view({1, 5})));
  CHECK(torch::equal(t->targets(), ids({0})));
  // min_count 2 keeps only the and cat; max_source_len cuts every row.
  auto rare = load_dataset(yaml + ", min_count: 2, max_source_len: 2}", DataPart::train);
  CHECK(rare->spec().vocab == Strings{"<pad>", "<unk>", "<bos>", "<eos>", "the", "cat"});
  CHECK(torch::equal(rare->inputs(), ids({4, 5, 4, 1, 1, 5}).view({3, 2})));
}

TEST_CASE("jsonl integer labels and the char tokenizer", "[data][jsonl]") {
  auto dir = sculpt::test::temp_dir("jsonl-int");
  write_text(dir + "/train.jsonl",
             "{\"text\": \"aba\", \"label\": 3}\n{\"text\": \"c\", \"label\": 0}\n");
  auto d = load_dataset("{name: jsonl, tokenizer: char, file: " + dir + "/train.jsonl}",
                        DataPart::train);
  CHECK(d->spec().vocab == Strings{"<pad>", "<unk>", "<bos>", "<eos>", "a", "b", "c"});
  CHECK(d->spec().num_classes == 4);
  CHECK(torch::equal(d->inputs(), ids({4, 5, 4, 6, 0, 0}).view({2, 3})));
  CHECK(torch::equal(d->targets(), ids({3, 0})));
}

TEST_CASE("jsonl query/target: source padded to source_len, then bos + target; targets end in eos",
          "[data][jsonl]") {
  auto dir = sculpt::test::temp_dir("jsonl-s2s");
  const std::string text =
      "{\"query\": \"x y z\", \"target\": \"y\"}\n"
      "{\"query\": \"y\", \"target\": \"z z x\"}\n";
  write_text(dir + "/train.jsonl", text);
  write_text(dir + "/packed.jsonl", text);
  REQUIRE(sculpt::test::run_process("gzip -f " + dir + "/packed.jsonl").exit_code == 0);
  auto d = load_dataset("{name: jsonl, file: " + dir + "/train.jsonl}", DataPart::train);
  // y: 3, z: 3, x: 2 -> y = 4, z = 5, x = 6. S = 3, T = 3 + 1.
  CHECK(d->spec().vocab == Strings{"<pad>", "<unk>", "<bos>", "<eos>", "y", "z", "x"});
  CHECK(d->spec().source_len == 3);
  CHECK(d->spec().input_shape == std::vector<int64_t>{7});
  CHECK(d->spec().num_classes == 0);
  const int64_t P = token::pad, B = token::bos, E = token::eos;
  CHECK(torch::equal(d->inputs(), ids({6, 4, 5, B, 4, P, P,  //
                                       4, P, P, B, 5, 5, 6})
                                      .view({2, 7})));
  CHECK(torch::equal(d->targets(), ids({4, E, P, P,  //
                                        5, 5, 6, E})
                                       .view({2, 4})));
  // A gzip'd file reads the same; max lengths cut sources and targets.
  auto packed = load_dataset("{name: jsonl, file: " + dir + "/packed.jsonl.gz}", DataPart::train);
  CHECK(torch::equal(packed->inputs(), d->inputs()));
  auto cut = load_dataset(
      "{name: jsonl, max_source_len: 2, max_target_len: 1, file: " + dir + "/train.jsonl}",
      DataPart::train);
  CHECK(cut->spec().source_len == 2);
  CHECK(torch::equal(cut->inputs(), ids({6, 4, B, 4, 4, P, B, 5}).view({2, 4})));
  CHECK(torch::equal(cut->targets(), ids({4, E, 5, E}).view({2, 2})));
}

TEST_CASE("bad jsonl lines are named by file and line", "[data][jsonl]") {
  auto dir = sculpt::test::temp_dir("jsonl-bad");
  auto error_for = [&](const std::string& name, const std::string& text,
                       const std::string& keys = "") {
    write_text(dir + "/" + name, text);
    return error_of("{name: jsonl, file: " + dir + "/" + name + keys + "}");
  };
  const std::string good = "{\"text\": \"a b\", \"label\": 1}\n";
  CHECK_THAT(error_for("json.jsonl", good + "{\"text\": \"a\", \"label\": 1\n"),
             Catch::Contains(dir + "/json.jsonl:2: not valid JSON"));
  CHECK_THAT(error_for("key.jsonl", good + "\n{\"text\": \"a\", \"lable\": 1}\n"),
             Catch::Contains(dir + "/key.jsonl:3: missing key 'label'"));
  CHECK_THAT(error_for("target.jsonl", "{\"query\": \"a\", \"answer\": \"b\"}\n"),
             Catch::Contains(dir + "/target.jsonl:1: missing key 'target'"));
  CHECK_THAT(error_for("mode.jsonl", good, ", mode: seq2seq"),
             Catch::Contains(dir + "/mode.jsonl:1: missing key 'query'"));
  CHECK_THAT(error_for("unknown.jsonl", "{\"sentence\": \"a\"}\n"),
             Catch::Contains(dir + "/unknown.jsonl:1: expected the keys text and label, or query "
                                   "and target"));
  CHECK_THAT(error_for("array.jsonl", "[1, 2]\n"),
             Catch::Contains(dir + "/array.jsonl:1: expected a JSON object, got array"));
  CHECK_THAT(error_for("type.jsonl", "{\"text\": 5, \"label\": 1}\n"),
             Catch::Contains(dir + "/type.jsonl:1: 'text' must be a string, got number"));
  CHECK_THAT(error_for("label.jsonl", good + "{\"text\": \"a\", \"label\": -2}\n"),
             Catch::Contains(dir + "/label.jsonl:2: 'label' must be a string or a non-negative "
                                   "integer, got -2"));
  CHECK_THAT(error_for("mixed.jsonl", good + "{\"text\": \"a\", \"label\": \"x\"}\n"),
             Catch::Contains(dir + "/mixed.jsonl:2: string and integer labels are mixed"));
  // A test label the train file never had.
  write_text(dir + "/test.jsonl", "{\"text\": \"a\", \"label\": 4}\n");
  CHECK_THAT(
      error_of("{name: jsonl, file: " + dir + "/json.jsonl, test_file: " + dir + "/test.jsonl}",
               DataPart::test),
      Catch::Contains(dir + "/json.jsonl:2: not valid JSON"));  // the train file first
  write_text(dir + "/train.jsonl", good);
  CHECK_THAT(
      error_of("{name: jsonl, file: " + dir + "/train.jsonl, test_file: " + dir + "/test.jsonl}",
               DataPart::test),
      Catch::Contains(dir + "/test.jsonl:1: label 4 is above the train file's largest "
                            "label 1"));
}
