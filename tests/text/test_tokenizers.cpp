// Sculpt's tokenizers against the Python libraries: the ids of every corpus line, decode, and
// pairs with truncation and padding, for every tokenizer tests/text/make_tokenizers.py writes.
#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/text/tokenizer.h"
#include "tests/support/process.h"

namespace {

const std::string kDir = SCULPT_TOKENIZER_FIXTURES;

nlohmann::json manifest() {
  std::ifstream in(kDir + "/manifest.json");
  if (!in)
    FAIL("no " << kDir << "/manifest.json: run the fixture test (tests/text/make_tokenizers.py)");
  return nlohmann::json::parse(in);
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

std::vector<int32_t> parse_ids(const std::string& line) {
  std::vector<int32_t> ids;
  std::istringstream in(line);
  for (int64_t v; in >> v;) ids.push_back(static_cast<int32_t>(v));
  return ids;
}

std::string show(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size() && i < 40; ++i) s += (i ? " " : "") + std::to_string(ids[i]);
  return s + (ids.size() > 40 ? " ..." : "");
}

}  // namespace

TEST_CASE("every tokenizer gives the Python library's ids on every corpus line", "[text]") {
  const auto m = manifest();
  const auto corpus = read_lines(kDir + "/corpus.txt");
  REQUIRE(corpus.size() == m["lines"].get<size_t>());
  REQUIRE(corpus.size() >= 10000);
  for (const auto& name : m["tokenizers"]) {
    const std::string n = name.get<std::string>();
    INFO("tokenizer " << n);
    const auto tok = sculpt::text::load_tokenizer(kDir + "/" + n);
    const auto expected = read_lines(kDir + "/" + n + ".ids.txt");
    REQUIRE(expected.size() == corpus.size());
    const auto got = tok->encode_batch(corpus, {}, 2);
    size_t mismatches = 0, first = corpus.size();
    for (size_t i = 0; i < corpus.size(); ++i)
      if (got[i].ids != parse_ids(expected[i])) {
        if (!mismatches) first = i;
        ++mismatches;
      }
    if (mismatches) {
      INFO(mismatches << " lines differ; first: line " << first + 1 << " '" << corpus[first]
                      << "'\n  python: " << show(parse_ids(expected[first]))
                      << "\n  sculpt: " << show(got[first].ids));
      CHECK(mismatches == 0);
    }
  }
}

TEST_CASE("decode gives the Python library's text for every corpus line", "[text]") {
  const auto m = manifest();
  for (const auto& name : m["tokenizers"]) {
    const std::string n = name.get<std::string>();
    INFO("tokenizer " << n);
    const auto tok = sculpt::text::load_tokenizer(kDir + "/" + n);
    const auto ids = read_lines(kDir + "/" + n + ".ids.txt");
    const auto decoded = read_lines(kDir + "/" + n + ".decode.jsonl");
    REQUIRE(ids.size() == decoded.size());
    size_t mismatches = 0, first = 0;
    std::string first_got;
    for (size_t i = 0; i < ids.size(); ++i) {
      const std::string want = nlohmann::json::parse(decoded[i]).get<std::string>();
      const std::string got = tok->decode(parse_ids(ids[i]), true);
      if (got != want) {
        if (!mismatches) first = i, first_got = got;
        ++mismatches;
      }
    }
    if (mismatches) {
      INFO(mismatches << " lines differ; first: line " << first + 1 << "\n  python: "
                      << decoded[first] << "\n  sculpt: " << nlohmann::json(first_got).dump());
      CHECK(mismatches == 0);
    }
  }
}

TEST_CASE("pairs truncated longest-first and padded match tokenizers' encodings", "[text]") {
  const auto m = manifest();
  int files = 0;
  for (const auto& name : m["tokenizers"]) {
    const std::string n = name.get<std::string>();
    std::ifstream in(kDir + "/" + n + ".pairs.jsonl");
    if (!in) continue;  // SentencePiece directories have no pair reference
    ++files;
    INFO("tokenizer " << n);
    const auto tok = sculpt::text::load_tokenizer(kDir + "/" + n);
    sculpt::text::EncodeOptions opt;
    opt.max_length = 24;
    opt.pad_to_max_length = true;
    for (std::string line; std::getline(in, line);) {
      const auto j = nlohmann::json::parse(line);
      const auto a = j["a"].get<std::string>(), b = j["b"].get<std::string>();
      INFO("a = '" << a << "', b = '" << b << "'");
      auto e = tok->encode(a, opt, std::string_view(b));
      CHECK(e.ids == j["ids"].get<std::vector<int32_t>>());
      CHECK(e.type_ids == j["type_ids"].get<std::vector<int32_t>>());
      CHECK(std::vector<int>(e.attention_mask.begin(), e.attention_mask.end()) ==
            j["mask"].get<std::vector<int>>());
    }
  }
  CHECK(files >= 6);
}

TEST_CASE("encode_batch on 1, 2 and 4 threads equals encode line by line", "[text]") {
  const auto corpus = read_lines(kDir + "/corpus.txt");
  const std::vector<std::string> some(corpus.begin(), corpus.begin() + 600);
  for (const char* n : {"gpt2", "bert", "sp_llama"}) {
    INFO("tokenizer " << n);
    const auto tok = sculpt::text::load_tokenizer(kDir + "/" + n);
    std::vector<std::vector<int32_t>> one;
    for (const auto& s : some) one.push_back(tok->encode(s).ids);
    for (int threads : {1, 2, 4}) {
      const auto batch = tok->encode_batch(some, {}, threads);
      REQUIRE(batch.size() == some.size());
      for (size_t i = 0; i < some.size(); ++i) REQUIRE(batch[i].ids == one[i]);
    }
  }
}

TEST_CASE("max_length truncates, pads with pad_id and masks the padding", "[text]") {
  for (const char* n : {"bert", "sp_t5", "sp_llama", "gpt2"}) {
    INFO("tokenizer " << n);
    const auto tok = sculpt::text::load_tokenizer(kDir + "/" + n);
    sculpt::text::EncodeOptions opt;
    opt.max_length = 8;
    opt.pad_to_max_length = true;
    const auto long_text =
        tok->encode("the model training data tokenizer network compress prune", opt);
    REQUIRE(long_text.ids.size() == 8);
    CHECK(long_text.attention_mask == std::vector<uint8_t>(8, 1));
    const auto full = tok->encode("the model training data tokenizer network compress prune");
    // The special tokens survive truncation: [CLS] ... [SEP], ... </s>, <s> ...
    const std::string name = n;
    if (name == "bert" || name == "sp_llama") CHECK(long_text.ids.front() == full.ids.front());
    if (name == "bert" || name == "sp_t5") CHECK(long_text.ids.back() == full.ids.back());
    const auto short_text = tok->encode("the", opt);
    REQUIRE(short_text.ids.size() == 8);
    const size_t real = tok->encode("the").ids.size();
    for (size_t i = 0; i < 8; ++i) {
      CHECK(short_text.attention_mask[i] == (i < real ? 1 : 0));
      if (i >= real) CHECK(short_text.ids[i] == tok->pad_id().value_or(0));
    }
  }
}

TEST_CASE("special token ids, vocabulary and fingerprints", "[text]") {
  const auto bert = sculpt::text::load_tokenizer(kDir + "/bert");
  CHECK(bert->pad_id() == bert->token_to_id("[PAD]"));
  CHECK(bert->unk_id() == bert->token_to_id("[UNK]"));
  CHECK(bert->id_to_token(*bert->token_to_id("[CLS]")) == "[CLS]");
  const auto t5 = sculpt::text::load_tokenizer(kDir + "/sp_t5");
  CHECK(t5->pad_id() == 0);
  CHECK(t5->eos_id() == 1);
  CHECK(t5->unk_id() == 2);
  const auto llama = sculpt::text::load_tokenizer(kDir + "/sp_llama");
  CHECK(llama->bos_id() == 1);
  CHECK(llama->encode("hello").ids.front() == 1);
  CHECK(llama->vocab_size() == 2500);
  const auto gpt2 = sculpt::text::load_tokenizer(kDir + "/gpt2");
  const auto legacy = sculpt::text::load_tokenizer(kDir + "/gpt2_legacy");
  CHECK(gpt2->fingerprint().size() == 16);
  CHECK(gpt2->fingerprint() != legacy->fingerprint());
  CHECK(gpt2->fingerprint() == sculpt::text::load_tokenizer(kDir + "/gpt2")->fingerprint());
  for (const auto& tok : {bert.get(), t5.get(), llama.get(), gpt2.get()})
    for (const int32_t id : tok->encode("tokenizer café 東京 😀").ids) {
      CHECK(id >= 0);
      CHECK(id < tok->vocab_size());
    }
}

TEST_CASE("sculpt tokenize prints the ids of each line and --stats the counts", "[text]") {
  const std::string out = sculpt::test::run_process(std::string(SCULPT_BIN) + " tokenize " + kDir +
                                                    "/corpus.txt --tokenizer " + kDir + "/bert")
                              .out;
  const auto expected = read_lines(kDir + "/bert.ids.txt");
  std::istringstream in(out);
  size_t n = 0;
  for (std::string line; std::getline(in, line); ++n) {
    REQUIRE(n < expected.size());
    REQUIRE(line == expected[n]);
  }
  CHECK(n == expected.size());
  const auto stats = sculpt::test::run_process(std::string(SCULPT_BIN) + " tokenize " + kDir +
                                               "/corpus.txt --tokenizer " + kDir +
                                               "/bert --stats --max-length 16");
  CHECK(stats.exit_code == 0);
  CHECK(stats.out.find("tokens/line: ") != std::string::npos);
  CHECK(stats.out.find("unknown: ") != std::string::npos);
}
