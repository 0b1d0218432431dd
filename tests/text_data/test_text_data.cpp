// Text datasets through a tokenizer (core/data/text_files.h, issue 25 part 3): the shapes, the
// token cache (reuse, rebuild, damaged or foreign caches never used), the bad inputs, and end to
// end with real tokenizers and a small BERT (tests/text_data/make_fixture.py): ids as Python's
// tokenizers gives them, `sculpt train`, the cache on the second run, exact resume, the recipe.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/app.h"
#include "core/config/config.h"
#include "core/data/text_files.h"
#include "core/error.h"
#include "core/models/hf/hf_model.h"
#include "core/tasks/decoding.h"
#include "core/tasks/task.h"
#include "core/text/tokenizer.h"
#include "tests/support/process.h"

namespace fs = std::filesystem;
using sculpt::data::DataPart;
using sculpt::data::TextFilesOptions;
using sculpt::test::read_text;
using sculpt::test::run_process;
using sculpt::test::temp_dir;
using sculpt::test::write_text;

namespace {

// Words split on spaces; id = 5 + a hash of the word below 1000. [CLS] 2 a.. [SEP] 3 (b.. [SEP] 3).
// pad 0, unk 1, eos 4. Counts encode calls (a cache hit makes none).
class FakeTokenizer final : public sculpt::text::Tokenizer {
 public:
  explicit FakeTokenizer(std::string fp = "fake-1") : fp_(std::move(fp)) {}
  mutable std::atomic<int64_t> calls{0};
  mutable std::string last_text;  // (single-threaded use in the checks that read it)

  static int32_t word_id(std::string_view w) {
    uint32_t h = 2166136261u;
    for (char c : w) h = (h ^ uint8_t(c)) * 16777619u;
    return 5 + static_cast<int32_t>(h % 1000);
  }
  static std::vector<int32_t> words(std::string_view s) {
    std::vector<int32_t> out;
    size_t i = 0;
    while (i < s.size()) {
      while (i < s.size() && s[i] == ' ') ++i;
      size_t j = i;
      while (j < s.size() && s[j] != ' ') ++j;
      if (j > i) out.push_back(word_id(s.substr(i, j - i)));
      i = j;
    }
    return out;
  }
  sculpt::text::Encoding encode(std::string_view text, const sculpt::text::EncodeOptions& o = {},
                                std::optional<std::string_view> pair = std::nullopt) const override {
    ++calls;
    sculpt::text::Encoding e;
    auto a = words(text);
    if (o.add_special_tokens) e.ids.push_back(2);
    e.ids.insert(e.ids.end(), a.begin(), a.end());
    if (o.add_special_tokens) e.ids.push_back(3);
    if (pair) {
      auto b = words(*pair);
      e.ids.insert(e.ids.end(), b.begin(), b.end());
      if (o.add_special_tokens) e.ids.push_back(3);
    }
    if (o.max_length > 0 && static_cast<int64_t>(e.ids.size()) > o.max_length) {
      e.ids.resize(static_cast<size_t>(o.max_length));
      if (o.add_special_tokens) e.ids.back() = 3;
    }
    e.attention_mask.assign(e.ids.size(), 1);
    e.type_ids.assign(e.ids.size(), 0);
    return e;
  }
  std::vector<sculpt::text::Encoding> encode_batch(const std::vector<std::string>& texts,
                                                   const sculpt::text::EncodeOptions& o = {},
                                                   int = 0) const override {
    std::vector<sculpt::text::Encoding> out;
    for (const auto& t : texts) {
      last_text = t;
      out.push_back(encode(t, o));
    }
    return out;
  }
  std::string decode(const std::vector<int32_t>&, bool = true) const override { return ""; }
  int64_t vocab_size() const override { return 1005; }
  std::optional<int32_t> token_to_id(std::string_view) const override { return std::nullopt; }
  std::string id_to_token(int32_t) const override { return ""; }
  std::optional<int32_t> pad_id() const override { return 0; }
  std::optional<int32_t> unk_id() const override { return 1; }
  std::optional<int32_t> bos_id() const override { return std::nullopt; }
  std::optional<int32_t> eos_id() const override { return 4; }
  std::string fingerprint() const override { return fp_; }

 private:
  std::string fp_;
};

TextFilesOptions options(const std::string& file) {
  TextFilesOptions o;
  o.file = file;
  return o;
}

std::string user_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const sculpt::UserError& e) {
    return e.what();
  }
  return "(no error)";
}

std::vector<std::string> caches_in(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".sculpt-tok-") != std::string::npos)
      out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

bool same(const at::Tensor& a, const at::Tensor& b) {
  return a.sizes() == b.sizes() && a.equal(b);
}

const char* kJsonl =
    "{\"text\": \"good film\", \"label\": \"pos\"}\n"
    "{\"text\": \"bad bad film\", \"label\": \"neg\"}\n"
    "\n"
    "{\"text\": \"a film\", \"label\": \"mid\", \"other\": 1}\n"
    "{\"text\": \"good\", \"label\": \"pos\"}\n";

}  // namespace

TEST_CASE("classify jsonl: ids, padding with -1, sorted label map saved in the run", "[text]") {
  const std::string dir = temp_dir("td-classify"), run = dir + "/run";
  fs::create_directories(run);
  write_text(dir + "/train.jsonl", kJsonl);
  FakeTokenizer tok;
  auto ds = sculpt::data::load_text_files(options(dir + "/train.jsonl"), DataPart::train, tok,
                                          {run, 1});
  REQUIRE(ds);
  CHECK(ds->size() == 4);
  CHECK(ds->spec().num_classes == 3);
  CHECK(ds->spec().vocab_size == 1005);
  CHECK(ds->spec().input_shape == std::vector<int64_t>{5});  // [CLS] bad bad film [SEP]
  const auto x = ds->inputs(), y = ds->targets();
  const auto f = FakeTokenizer::word_id;
  CHECK(x[0].equal(at::tensor({2, f("good"), f("film"), 3, -1}, at::kLong)));
  CHECK(x[1].equal(at::tensor({2, f("bad"), f("bad"), f("film"), 3}, at::kLong)));
  CHECK(y.equal(at::tensor({2, 1, 0, 2}, at::kLong)));  // sorted: mid 0, neg 1, pos 2
  const auto labels = nlohmann::json::parse(read_text(run + "/labels.json"));
  CHECK(labels["labels"] == nlohmann::json({"mid", "neg", "pos"}));

  // A given map: ids by position; pad_id and padding to max_length.
  auto o = options(dir + "/train.jsonl");
  o.labels = {"pos", "neg", "mid"};
  o.pad_id = 0;
  o.max_length = 8;
  o.padding = "max_length";
  auto ds2 = sculpt::data::load_text_files(o, DataPart::train, tok, {});
  CHECK(ds2->targets().equal(at::tensor({0, 1, 2, 0}, at::kLong)));
  CHECK(ds2->inputs()[0].equal(at::tensor({2, f("good"), f("film"), 3, 0, 0, 0, 0}, at::kLong)));
}

TEST_CASE("the token cache: written beside the data, reused, rebuilt when data or tokenizer "
          "change, never used when damaged",
          "[text]") {
  const std::string dir = temp_dir("td-cache");
  const std::string file = dir + "/train.jsonl";
  write_text(file, kJsonl);
  FakeTokenizer tok;
  const auto o = options(file);
  auto first = sculpt::data::load_text_files(o, DataPart::train, tok, {});
  REQUIRE(caches_in(dir).size() == 1);
  const std::string cache = caches_in(dir)[0];
  CHECK(cache == sculpt::data::text_cache_path(o, file, tok));
  CHECK(fs::path(cache).filename().string().rfind("train.jsonl.sculpt-tok-", 0) == 0);
  REQUIRE(tok.calls > 0);

  // Reused: no encoding at all, the same rows.
  tok.calls = 0;
  auto second = sculpt::data::load_text_files(o, DataPart::train, tok, {});
  CHECK(tok.calls == 0);
  CHECK(same(first->inputs(), second->inputs()));
  CHECK(same(first->targets(), second->targets()));

  // Options that only pad or map labels reuse it too.
  auto padded = o;
  padded.pad_id = 0;
  padded.labels = {"pos", "neg", "mid"};
  sculpt::data::load_text_files(padded, DataPart::train, tok, {});
  CHECK(tok.calls == 0);
  CHECK(caches_in(dir).size() == 1);

  SECTION("truncated: rebuilt, the same rows") {
    fs::resize_file(cache, fs::file_size(cache) - 10);
    auto again = sculpt::data::load_text_files(o, DataPart::train, tok, {});
    CHECK(tok.calls > 0);
    CHECK(same(first->inputs(), again->inputs()));
    tok.calls = 0;
    sculpt::data::load_text_files(o, DataPart::train, tok, {});
    CHECK(tok.calls == 0);  // the rebuilt cache is whole
  }
  SECTION("damaged ids: rebuilt") {
    std::string bytes = read_text(cache);
    bytes[bytes.size() - 9] = '\x7f';  // the last id's high byte: an id above the vocabulary
    write_text(cache, bytes);
    auto again = sculpt::data::load_text_files(o, DataPart::train, tok, {});
    CHECK(tok.calls > 0);
    CHECK(same(first->inputs(), again->inputs()));
  }
  SECTION("another tokenizer: its own cache; its cache under this one's name is not used") {
    FakeTokenizer other("fake-2");
    sculpt::data::load_text_files(o, DataPart::train, other, {});
    CHECK(other.calls > 0);
    REQUIRE(caches_in(dir).size() == 2);
    const std::string theirs = sculpt::data::text_cache_path(o, file, other);
    fs::copy_file(theirs, cache, fs::copy_options::overwrite_existing);
    auto again = sculpt::data::load_text_files(o, DataPart::train, tok, {});
    CHECK(tok.calls > 0);
    CHECK(same(first->inputs(), again->inputs()));
  }
  SECTION("changed data: a new cache") {
    write_text(file, std::string(kJsonl) + "{\"text\": \"new\", \"label\": \"neg\"}\n");
    auto again = sculpt::data::load_text_files(o, DataPart::train, tok, {});
    CHECK(tok.calls > 0);
    CHECK(again->size() == 5);
    CHECK(caches_in(dir).size() == 2);
  }
  SECTION("cache: false writes none") {
    const std::string d2 = temp_dir("td-nocache");
    write_text(d2 + "/t.jsonl", kJsonl);
    auto o2 = options(d2 + "/t.jsonl");
    o2.cache = false;
    sculpt::data::load_text_files(o2, DataPart::train, tok, {});
    CHECK(caches_in(d2).empty());
  }
}

TEST_CASE("an unwritable data folder: the cache goes to <run>/tokenized", "[text]") {
  const std::string dir = temp_dir("td-readonly"), run = dir + "/run";
  fs::create_directories(dir + "/data");
  fs::create_directories(run);
  write_text(dir + "/data/train.jsonl", kJsonl);
  fs::permissions(dir + "/data", fs::perms::owner_read | fs::perms::owner_exec);
  if (::access((dir + "/data").c_str(), W_OK) == 0) {
    fs::permissions(dir + "/data", fs::perms::owner_all);
    sculpt::test::skip_test("running as root: a folder cannot be made unwritable");
  }
  FakeTokenizer tok;
  auto o = options(dir + "/data/train.jsonl");
  sculpt::data::load_text_files(o, DataPart::train, tok, {run, 1});
  fs::permissions(dir + "/data", fs::perms::owner_all);
  CHECK(caches_in(dir + "/data").empty());
  REQUIRE(caches_in(run + "/tokenized").size() == 1);
  tok.calls = 0;
  sculpt::data::load_text_files(o, DataPart::train, tok, {run, 1});
  CHECK(tok.calls > 0);  // the data folder is writable now: the cache goes there
}

TEST_CASE("csv, tsv, pairs, seq2seq and packed lm", "[text]") {
  const std::string dir = temp_dir("td-shapes");
  FakeTokenizer tok;
  const auto f = FakeTokenizer::word_id;

  // CSV: quotes, a doubled quote, a line break inside a field, CRLF; integer labels sort
  // numerically.
  write_text(dir + "/a.csv",
             "id,text,label\r\n1,\"good, film\",10\r\n2,\"say \"\"hi\"\"\nthere\",9\r\n3,plain,10\r\n");
  auto o = options(dir + "/a.csv");
  auto ds = sculpt::data::load_text_files(o, DataPart::train, tok, {});
  CHECK(ds->size() == 3);
  CHECK(ds->targets().equal(at::tensor({1, 0, 1}, at::kLong)));  // 9 < 10
  CHECK(ds->inputs()[0].equal(at::tensor({2, f("good,"), f("film"), 3}, at::kLong)));
  CHECK(ds->inputs()[1].equal(at::tensor({2, f("say"), f("\"hi\"\nthere"), 3}, at::kLong)));

  write_text(dir + "/b.tsv", "text\tpair\tlabel\nx y\tz\tA\nq\tr s\tB\n");
  auto op = options(dir + "/b.tsv");
  op.pair_field = "pair";
  auto pairs = sculpt::data::load_text_files(op, DataPart::train, tok, {});
  CHECK(pairs->inputs()[0].equal(at::tensor({2, f("x"), f("y"), 3, f("z"), 3}, at::kLong)));
  CHECK(pairs->inputs()[1].equal(at::tensor({2, f("q"), 3, f("r"), f("s"), 3}, at::kLong)));

  // seq2seq: [source | start + target], targets = target (+ eos) padded with 0.
  write_text(dir + "/s.jsonl",
             "{\"query\": \"a b\", \"target\": \"c\"}\n{\"query\": \"d\", \"target\": \"e f g\"}\n");
  auto os = options(dir + "/s.jsonl");
  os.add_special_tokens = false;
  auto s2s = sculpt::data::load_text_files(os, DataPart::train, tok, {});
  CHECK(s2s->spec().source_len == 2);
  CHECK(s2s->inputs()[0].equal(at::tensor({f("a"), f("b"), 0, f("c"), -1, -1}, at::kLong)));
  CHECK(s2s->targets()[0].equal(at::tensor({f("c"), 4, 0, 0}, at::kLong)));
  CHECK(s2s->inputs()[1].equal(at::tensor({f("d"), -1, 0, f("e"), f("f"), f("g")}, at::kLong)));
  CHECK(s2s->targets()[1].equal(at::tensor({f("e"), f("f"), f("g"), 4}, at::kLong)));

  // lm: each line's ids + eos, concatenated, cut into blocks; targets are the next ids.
  write_text(dir + "/c.txt", "a b c\n\nd e\nf g h i\n");
  auto ol = options(dir + "/c.txt");
  ol.block_size = 3;
  ol.add_special_tokens = false;
  auto lm = sculpt::data::load_text_files(ol, DataPart::train, tok, {});
  // a b c eos d e eos f g h i eos: 12 ids -> (12 - 1) / 3 = 3 blocks
  CHECK(lm->size() == 3);
  CHECK(lm->spec().num_classes == 0);
  CHECK(lm->inputs().flatten().equal(at::tensor(
      {f("a"), f("b"), f("c"), 4, f("d"), f("e"), 4, f("f"), f("g")}, at::kLong)));
  CHECK(lm->targets().flatten().equal(at::tensor(
      {f("b"), f("c"), 4, f("d"), f("e"), 4, f("f"), f("g"), f("h")}, at::kLong)));

  // The test part shares the train file's label map and length.
  write_text(dir + "/train.jsonl", kJsonl);
  write_text(dir + "/test.jsonl", "{\"text\": \"x y z w v u t\", \"label\": \"neg\"}\n");
  auto ot = options(dir + "/train.jsonl");
  ot.test_file = dir + "/test.jsonl";
  auto test = sculpt::data::load_text_files(ot, DataPart::test, tok, {});
  CHECK(test->inputs().sizes() == at::IntArrayRef({1, 5}));
  CHECK(test->targets().equal(at::tensor({1}, at::kLong)));
  CHECK(sculpt::data::load_text_files(options(dir + "/train.jsonl"), DataPart::test, tok, {}) ==
        nullptr);
}

TEST_CASE("seq2seq: start, eos and never-generated ids from the tokenizer, or the hf "
          "checkpoint's config.json",
          "[text]") {
  const std::string dir = temp_dir("td-s2s-ids");
  FakeTokenizer tok;
  const auto f = FakeTokenizer::word_id;
  write_text(dir + "/s.jsonl",
             "{\"query\": \"a b\", \"target\": \"c\"}\n{\"query\": \"d\", \"target\": \"e f g\"}\n");
  auto o = options(dir + "/s.jsonl");
  o.add_special_tokens = false;
  // The tokenizer's: start = its pad id (T5's convention), eos, pad never generated.
  auto plain = sculpt::data::load_text_files(o, DataPart::train, tok, {});
  CHECK(plain->spec().decoder_start_id == 0);
  CHECK(plain->spec().eos_id == 4);
  CHECK(plain->spec().pad_id == 0);
  REQUIRE(caches_in(dir).size() == 1);

  // An hf checkpoint's decoder_start_token_id and eos_token_id (the first of a list) win: the
  // decoder input starts with it, the targets end with it, and the cache is another one.
  fs::create_directories(dir + "/hf");
  write_text(dir + "/hf/config.json",
             "{\"decoder_start_token_id\": 7, \"eos_token_id\": [9, 10], \"pad_token_id\": 5}");
  sculpt::data::TextFilesContext ctx;
  ctx.hf_model_path = dir + "/hf";
  auto hf = sculpt::data::load_text_files(o, DataPart::train, tok, ctx);
  CHECK(hf->spec().decoder_start_id == 7);
  CHECK(hf->spec().eos_id == 9);
  CHECK(hf->spec().pad_id == 0);  // the tokenizer's pad first
  CHECK(hf->inputs()[0].equal(at::tensor({f("a"), f("b"), 7, f("c"), -1, -1}, at::kLong)));
  CHECK(hf->targets()[0].equal(at::tensor({f("c"), 9, 0, 0}, at::kLong)));
  CHECK(hf->targets()[1].equal(at::tensor({f("e"), f("f"), f("g"), 9}, at::kLong)));
  CHECK(caches_in(dir).size() == 2);
  CHECK(sculpt::data::text_cache_path(o, o.file, tok, ctx) != sculpt::data::text_cache_path(o, o.file, tok));

  write_text(dir + "/hf/config.json", "{\"eos_token_id\": 5000}");
  CHECK_THAT(user_error([&] { sculpt::data::load_text_files(o, DataPart::train, tok, ctx); }),
             Catch::Contains(dir + "/hf/config.json: eos_token_id 5000 is outside the "
                             "tokenizer's vocabulary (1005 ids)"));
  write_text(dir + "/hf/config.json", "{\"eos_token_id\": ");
  CHECK_THAT(user_error([&] { sculpt::data::load_text_files(o, DataPart::train, tok, ctx); }),
             Catch::Contains(dir + "/hf/config.json: not valid JSON"));

  // data.config reads model.path of an hf model for it.
  sculpt::cli::register_builtins();
  write_text(dir + "/hf/config.json", "{}");
  const auto cfg = sculpt::config::Config::parse(
      "data: {name: text, file: " + dir + "/s.jsonl}\nmodel: {name: hf, path: " + dir + "/hf}\n");
  CHECK(cfg.data.hf_model_path == dir + "/hf");
  CHECK(cfg.data.default_tokenizer == dir + "/hf");
}

namespace {
// A seq2seq "model" that copies the source, then says eos: at decoder position t it predicts
// source[t] (eos past the source's end), but only when the decoder input starts with `start`;
// otherwise it predicts id 1 everywhere.
sculpt::tasks::Forward copy_model(int64_t source_len, int64_t start, int64_t eos, int64_t vocab) {
  return [=](const at::Tensor& x) {
    const int64_t b = x.size(0), t = x.size(1) - source_len;
    auto logits = at::zeros({b, t, vocab}, at::kFloat);
    for (int64_t r = 0; r < b; ++r) {
      const bool started = x[r][source_len].item<int64_t>() == start;
      for (int64_t p = 0; p < t; ++p) {
        int64_t want = 1;
        if (started) {
          want = p < source_len ? x[r][p].item<int64_t>() : -1;
          if (want < 0) want = eos;
        }
        logits[r][p][want] = 5.0;
      }
    }
    return logits;
  };
}
}  // namespace

TEST_CASE("seq2seq evaluation decodes from the dataset's start id and stops at its eos",
          "[text]") {
  const std::string dir = temp_dir("td-s2s-decode");
  FakeTokenizer tok;
  // Targets equal the queries, so the copy model gets every one right when it is started with
  // the right id and stops at the right eos.
  write_text(dir + "/s.jsonl",
             "{\"query\": \"a b\", \"target\": \"a b\"}\n{\"query\": \"d\", \"target\": \"d\"}\n"
             "{\"query\": \"x y z\", \"target\": \"x y z\"}\n");
  fs::create_directories(dir + "/hf");
  write_text(dir + "/hf/config.json", "{\"decoder_start_token_id\": 7, \"eos_token_id\": 9}");
  auto o = options(dir + "/s.jsonl");
  o.add_special_tokens = false;
  sculpt::data::TextFilesContext ctx;
  ctx.hf_model_path = dir + "/hf";
  auto ds = sculpt::data::load_text_files(o, DataPart::train, tok, ctx);
  const auto& spec = ds->spec();
  REQUIRE(spec.source_len == 3);
  const auto forward = copy_model(spec.source_len, 7, 9, spec.vocab_size);

  sculpt::cli::register_builtins();
  auto exact = [&](const sculpt::data::DataSpec& sp) {
    const auto cfg = sculpt::config::Config::parse(
        "data: {name: synthetic_blobs}\nmodel: {name: mlp}\ntask: {name: seq2seq}\n");
    auto task = sculpt::tasks::task_registry().create("seq2seq", cfg.task, sp);
    sculpt::tasks::MetricSums sums;
    task->evaluate_batch(sums, forward, ds->inputs(), ds->targets());
    return task->finish(sums).at("exact_match");
  };
  CHECK(exact(spec) == 1.0);
  // Sculpt's fixed ids (start 2, eos 3), as evaluation used before: nothing matches.
  auto fixed = spec;
  fixed.decoder_start_id = sculpt::data::token::bos;
  fixed.eos_id = sculpt::data::token::eos;
  fixed.pad_id = sculpt::data::token::pad;
  CHECK(exact(fixed) == 0.0);

  // Beam search with the same ids: the best beam is the target.
  const auto source = ds->inputs().narrow(1, 0, spec.source_len);
  const auto beams = sculpt::tasks::beam_search(forward, source, ds->targets().size(1), 2, nullptr,
                                                sculpt::tasks::DecodeIds::of(spec));
  CHECK(beams.tokens.select(1, 0).equal(ds->targets()));
  // The start id (unless it is eos) and the pad id are never generated.
  const auto never = sculpt::tasks::greedy_decode(
      [&](const at::Tensor& x) {
        auto l = at::zeros({x.size(0), x.size(1) - 2, 20}, at::kFloat);
        l.select(2, 7).fill_(9.0);  // the start id is the most likely
        l.select(2, 0).fill_(8.0);  // then the pad id
        l.select(2, 9).fill_(1.0);
        return l;
      },
      at::zeros({1, 2}, at::kLong), 3, sculpt::tasks::DecodeIds{7, 9, 0});
  CHECK(never.equal(at::tensor({9, 0, 0}, at::kLong).view({1, 3})));
}

TEST_CASE("bad text input: file, line, byte offset, label, field", "[text]") {
  const std::string dir = temp_dir("td-bad");
  FakeTokenizer tok;
  auto load = [&](const TextFilesOptions& o) {
    return user_error([&] { sculpt::data::load_text_files(o, DataPart::train, tok, {}); });
  };
  const std::string bad = dir + "/bad.jsonl";
  write_text(bad, "{\"text\": \"fine\", \"label\": \"a\"}\n{\"text\": \"caf\xC3 x\", \"label\": \"b\"}\n");
  auto e = load(options(bad));
  CHECK_THAT(e, Catch::Contains(bad + ":2: not valid UTF-8 at byte offset 44"));
  CHECK_THAT(e, Catch::Contains("byte 13 of the line"));
  CHECK_THAT(e, Catch::Contains("invalid_utf8: replace"));
  auto o = options(bad);
  o.invalid_utf8 = "replace";
  tok.last_text.clear();
  auto ds = sculpt::data::load_text_files(o, DataPart::train, tok, {});
  CHECK(tok.last_text == "caf\xEF\xBF\xBD x");
  // Overlong, surrogate and truncated sequences are errors too.
  for (const std::string& seq : {std::string("\xC0\xAF"), std::string("\xED\xA0\x80"),
                                 std::string("\xF0\x9F\x98")}) {
    write_text(dir + "/b2.txt", "ok\nab" + seq + "\n");
    CHECK_THAT(load(options(dir + "/b2.txt")),
               Catch::Contains(dir + "/b2.txt:2: not valid UTF-8 at byte offset 5"));
  }

  write_text(dir + "/l.jsonl", "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": \"zz\"}\n");
  auto ol = options(dir + "/l.jsonl");
  ol.labels = {"x", "y"};
  CHECK_THAT(load(ol), Catch::Contains(dir + "/l.jsonl:2: label 'zz' is not in the label map "
                                             "(data.labels: x, y)"));
  write_text(dir + "/t.jsonl", "{\"text\": \"a\", \"label\": \"q\"}\n");
  auto ot = options(dir + "/l.jsonl");
  ot.test_file = dir + "/t.jsonl";
  CHECK_THAT(user_error([&] { sculpt::data::load_text_files(ot, DataPart::test, tok, {}); }),
             Catch::Contains(dir + "/t.jsonl:1: label 'q' is not in the label map (the labels of " +
                             dir + "/l.jsonl: x, zz)"));

  write_text(dir + "/m.jsonl", "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"a\", \"label\": \n");
  CHECK_THAT(load(options(dir + "/m.jsonl")), Catch::Contains(dir + "/m.jsonl:2: not valid JSON"));
  // Any JSON error names the line: a number out of range is nlohmann's out_of_range, not a
  // parse_error; also when the shape is read from the first record.
  write_text(dir + "/big.jsonl",
             "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": 1e999}\n");
  CHECK_THAT(load(options(dir + "/big.jsonl")),
             Catch::Contains(dir + "/big.jsonl:2: not valid JSON"));
  write_text(dir + "/big1.jsonl", "{\"text\": \"b\", \"n\": -1e999, \"label\": \"x\"}\n");
  CHECK_THAT(load(options(dir + "/big1.jsonl")),
             Catch::Contains(dir + "/big1.jsonl:1: not valid JSON"));
  write_text(dir + "/arr.jsonl", "{\"text\": \"a\", \"label\": \"x\"}\n[\"a\", \"x\"]\n");
  CHECK_THAT(load(options(dir + "/arr.jsonl")),
             Catch::Contains(dir + "/arr.jsonl:2: expected a JSON object, got array"));
  write_text(dir + "/f.jsonl", "{\"text\": \"a\", \"label\": \"x\"}\n\n{\"txt\": \"a\", \"label\": \"y\"}\n");
  CHECK_THAT(load(options(dir + "/f.jsonl")),
             Catch::Contains(dir + "/f.jsonl:3: missing field 'text'"));
  write_text(dir + "/n.jsonl", "{\"text\": 5, \"label\": \"x\"}\n");
  CHECK_THAT(load(options(dir + "/n.jsonl")),
             Catch::Contains(dir + "/n.jsonl:1: field 'text' must be a string"));
  write_text(dir + "/c.csv", "text,label\na,x\nb\n");
  CHECK_THAT(load(options(dir + "/c.csv")),
             Catch::Contains(dir + "/c.csv:3: missing field 'label'"));
  write_text(dir + "/h.csv", "body,label\na,x\n");
  auto oh = options(dir + "/h.csv");
  oh.shape = "classify";
  CHECK_THAT(load(oh), Catch::Contains(dir + "/h.csv:1: missing field 'text': no such column"));

  write_text(dir + "/long.jsonl", "{\"text\": \"a b c d\", \"label\": \"x\"}\n{\"text\": \"a\", \"label\": \"y\"}\n");
  auto olong = options(dir + "/long.jsonl");
  olong.max_length = 4;
  olong.truncation = false;
  CHECK_THAT(load(olong), Catch::Contains(dir + "/long.jsonl:1: 6 ids, more than data.max_length = 4"));
  olong.truncation = true;
  auto cut = sculpt::data::load_text_files(olong, DataPart::train, tok, {});
  CHECK(cut->inputs()[0].equal(at::tensor({2, FakeTokenizer::word_id("a"),
                                           FakeTokenizer::word_id("b"), 3}, at::kLong)));
}

// ---- with real tokenizers (tests/text_data/make_fixture.py) ----

namespace {
std::string fixtures() {
  const std::string dir = SCULPT_TEXT_FIXTURES;
  if (!fs::exists(dir + "/expected.json"))
    sculpt::test::skip_test(dir + " is missing: the text fixtures did not run");
  return dir;
}

nlohmann::json expected() {
  return nlohmann::json::parse(read_text(fixtures() + "/expected.json"));
}

std::string write_texts(const std::string& path, const nlohmann::json& texts) {
  std::string body;
  for (size_t i = 0; i < texts.size(); ++i)
    body += nlohmann::json({{"text", texts[i]}, {"pair", texts[(i + 1) % texts.size()]},
                            {"label", i % 3 == 0 ? "a" : "b"}})
                .dump() +
            "\n";
  write_text(path, body);
  return path;
}

std::vector<int64_t> row_ids(const at::Tensor& row) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < row.size(0); ++i)
    if (row[i].item<int64_t>() >= 0) out.push_back(row[i].item<int64_t>());
  return out;
}

std::string train_config(const std::string& dir, const std::string& data_file,
                         const std::string& extra = "") {
  const std::string bert = fixtures() + "/bert";
  const std::string path = dir + "/t.yaml";
  write_text(path,
             "run: {name: t, device: cpu, seed: 3}\n"
             "data: {name: text, file: " + data_file + ", batch_size: 16, val_fraction: 0.1}\n"
             "model: {name: hf, path: " + bert + "}\n"
             "optimizer: {name: adamw, lr: 0.001}\n"
             "trainer: {max_steps: 12, log_every: 1, checkpoint_every: 4, keep_checkpoints: 10}\n" +
                 extra);
  return path;
}
}  // namespace

TEST_CASE("real tokenizers: dataset rows hold the ids Python's tokenizers gives", "[text][e2e]") {
  const auto exp = expected();
  const std::string dir = temp_dir("td-real");
  const std::string file = write_texts(dir + "/d.jsonl", exp["texts"]);
  auto bert = sculpt::text::load_tokenizer(fixtures() + "/bert");
  auto ds = sculpt::data::load_text_files(options(file), DataPart::train, *bert, {});
  REQUIRE(ds->size() == static_cast<int64_t>(exp["texts"].size()));
  for (int64_t r = 0; r < ds->size(); ++r) {
    INFO("line " << r + 1 << ": " << exp["texts"][size_t(r)]);
    CHECK(row_ids(ds->inputs()[r]) == exp["ids"][size_t(r)].get<std::vector<int64_t>>());
  }
  auto op = options(file);
  op.pair_field = "pair";
  auto pairs = sculpt::data::load_text_files(op, DataPart::train, *bert, {});
  for (int64_t r = 0; r < pairs->size(); ++r)
    CHECK(row_ids(pairs->inputs()[r]) == exp["pair_ids"][size_t(r)].get<std::vector<int64_t>>());

  // lm through byte-level BPE: every line's ids + <|endoftext|>, back to back.
  auto bpe = sculpt::text::load_tokenizer(fixtures() + "/bpe");
  std::string lines;
  std::vector<int64_t> stream;
  for (size_t i = 0; i < exp["texts"].size(); ++i) {
    lines += exp["texts"][i].get<std::string>() + "\n";
    for (int64_t id : exp["bpe_ids"][i].get<std::vector<int64_t>>()) stream.push_back(id);
    stream.push_back(*bpe->eos_id());
  }
  write_text(dir + "/d.txt", lines);
  auto ol = options(dir + "/d.txt");
  ol.block_size = 16;
  auto lm = sculpt::data::load_text_files(ol, DataPart::train, *bpe, {});
  const auto flat = lm->inputs().flatten();
  REQUIRE(flat.size(0) == lm->size() * 16);
  for (int64_t i = 0; i < flat.size(0); ++i) CHECK(flat[i].item<int64_t>() == stream[size_t(i)]);
}

TEST_CASE("text pairs: the tokenizer's token type ids reach an hf BERT, whose logits equal "
          "transformers'",
          "[text][e2e]") {
  const auto exp = expected();
  const std::string dir = temp_dir("td-pair-types");
  const std::string model = fixtures() + "/bert_pairs";
  const std::string file = write_texts(dir + "/p.jsonl", exp["texts"]);
  auto tok = sculpt::text::load_tokenizer(model);
  auto o = options(file);
  o.pair_field = "pair";
  o.labels = {"a", "b", "c"};  // the checkpoint's three labels
  sculpt::data::TextFilesContext ctx;
  ctx.hf_model_path = model;  // type_vocab_size 2: token type ids (data.token_type_ids: auto)
  auto ds = sculpt::data::load_text_files(o, DataPart::train, *tok, ctx);
  REQUIRE(ds->spec().token_type_ids);
  const auto x = ds->inputs();
  REQUIRE(x.dim() == 3);
  REQUIRE(x.size(1) == 2);
  CHECK(ds->spec().input_shape == std::vector<int64_t>{2, x.size(2)});
  for (int64_t r = 0; r < ds->size(); ++r) {
    INFO("pair " << r);
    const auto want_ids = exp["pair_ids"][size_t(r)].get<std::vector<int64_t>>();
    const auto want_types = exp["pair_type_ids"][size_t(r)].get<std::vector<int64_t>>();
    CHECK(row_ids(x[r][0]) == want_ids);
    std::vector<int64_t> types;
    for (int64_t i = 0; i < x.size(2); ++i) types.push_back(x[r][1][i].item<int64_t>());
    CHECK(std::vector<int64_t>(types.begin(), types.begin() + int64_t(want_types.size())) ==
          want_types);
    CHECK(std::all_of(types.begin() + int64_t(want_types.size()), types.end(),
                      [](int64_t t) { return t == 0; }));  // padding: type 0
  }

  auto m = sculpt::models::hf::load_pretrained(model, ds->spec());
  m->eval();
  at::NoGradGuard no_grad;
  std::vector<float> flat;
  for (const auto& row : exp["pair_logits"])
    for (float v : row.get<std::vector<float>>()) flat.push_back(v);
  const auto ref = at::tensor(flat).view({ds->size(), -1});
  const auto logits = m->forward(x).to(at::kFloat);
  REQUIRE(logits.sizes() == ref.sizes());
  CHECK((logits - ref).abs().max().item<float>() < 1e-4);

  // Without them (data.token_type_ids: false) every token is type 0: other logits.
  o.token_type_ids = "false";
  auto flat_ds = sculpt::data::load_text_files(o, DataPart::train, *tok, ctx);
  REQUIRE(flat_ds->inputs().dim() == 2);
  auto m2 = sculpt::models::hf::load_pretrained(model, flat_ds->spec());
  m2->eval();
  CHECK((m2->forward(flat_ds->inputs()).to(at::kFloat) - ref).abs().max().item<float>() > 1e-2);

  // A checkpoint without segment embeddings refuses them, naming the key.
  o.token_type_ids = "true";
  auto forced = sculpt::data::load_text_files(o, DataPart::train, *tok, {});
  REQUIRE(forced->spec().token_type_ids);
  fs::create_directories(dir + "/roberta");
  auto cfg = nlohmann::json::parse(read_text(model + "/config.json"));
  cfg["type_vocab_size"] = 1;
  write_text(dir + "/roberta/config.json", cfg.dump());
  fs::copy_file(model + "/model.safetensors", dir + "/roberta/model.safetensors");
  try {
    sculpt::models::hf::load_pretrained(dir + "/roberta", forced->spec());
    FAIL("no error");
  } catch (const std::exception& e) {
    CHECK_THAT(e.what(), Catch::Contains("data.token_type_ids: false"));
  }
}

TEST_CASE("sculpt train on jsonl with an hf model: tokenized once, then from the cache",
          "[text][e2e]") {
  const std::string dir = temp_dir("td-train");
  fs::copy_file(SCULPT_SOURCE_DIR "/examples/text_classify/train.jsonl", dir + "/train.jsonl");
  const std::string cfg = train_config(dir, dir + "/train.jsonl", "");
  const std::string cmd = std::string(SCULPT_BIN) + " train " + cfg + " trainer.max_steps=3 ";
  auto first = run_process(cmd + "run.output_dir=" + dir + "/a --log-level info");
  INFO(first.err);
  REQUIRE(first.exit_code == 0);
  CHECK_THAT(first.err, Catch::Contains("data: tokenized " + dir + "/train.jsonl: 600 records"));
  CHECK(nlohmann::json::parse(read_text(dir + "/a/labels.json"))["labels"] ==
        nlohmann::json({"negative", "neutral", "positive"}));
  auto second = run_process(cmd + "run.output_dir=" + dir + "/b --log-level info");
  INFO(second.err);
  REQUIRE(second.exit_code == 0);
  CHECK_THAT(second.err, Catch::Contains("600 records"));
  CHECK_THAT(second.err, Catch::Contains("from the token cache " + dir + "/train.jsonl.sculpt-tok-"));
  CHECK_THAT(second.err, !Catch::Contains("data: tokenized"));

  // A cache another tokenizer wrote, under this tokenizer's name: a warning, rebuilt.
  auto bert = sculpt::text::load_tokenizer(fixtures() + "/bert");
  auto other = sculpt::text::load_tokenizer(fixtures() + "/bert_other");
  auto o = options(dir + "/train.jsonl");
  sculpt::data::load_text_files(o, DataPart::train, *other, {});
  fs::copy_file(sculpt::data::text_cache_path(o, o.file, *other),
                sculpt::data::text_cache_path(o, o.file, *bert),
                fs::copy_options::overwrite_existing);
  auto third = run_process(cmd + "run.output_dir=" + dir + "/c --log-level info");
  INFO(third.err);
  REQUIRE(third.exit_code == 0);
  CHECK_THAT(third.err, Catch::Contains("is not used: it was written by another tokenizer"));
  CHECK_THAT(third.err, Catch::Contains("data: tokenized"));

  // Invalid UTF-8 through the CLI: exit 2 with file, line and byte offset.
  write_text(dir + "/bad.jsonl", "{\"text\": \"ok\", \"label\": \"a\"}\n{\"text\": \"\xff\", \"label\": \"b\"}\n");
  auto bad = run_process(std::string(SCULPT_BIN) + " train " + cfg + " data.file=" + dir +
                         "/bad.jsonl run.output_dir=" + dir + "/d");
  CHECK(bad.exit_code == 2);
  CHECK_THAT(bad.err, Catch::Contains(dir + "/bad.jsonl:2: not valid UTF-8 at byte offset 39"));
  // A JSON error other than a syntax error (a number out of range): exit 2, file and line.
  write_text(dir + "/big.jsonl", "{\"text\": \"ok\", \"label\": \"a\"}\n{\"text\": \"b\", \"label\": 2e999}\n");
  auto big = run_process(std::string(SCULPT_BIN) + " train " + cfg + " data.file=" + dir +
                         "/big.jsonl run.output_dir=" + dir + "/e");
  CHECK(big.exit_code == 2);
  CHECK_THAT(big.err, Catch::Contains(dir + "/big.jsonl:2: not valid JSON"));
}

TEST_CASE("a text run resumed from a checkpoint matches the uninterrupted run bit for bit",
          "[text][e2e][resume]") {
  const std::string dir = temp_dir("td-resume");
  fs::copy_file(SCULPT_SOURCE_DIR "/examples/text_classify/train.jsonl", dir + "/train.jsonl");
  const std::string cfg = train_config(dir, dir + "/train.jsonl");
  const std::string cmd = std::string(SCULPT_BIN) + " train " + cfg;
  REQUIRE(run_process(cmd + " run.output_dir=" + dir + "/a --log-level warn").exit_code == 0);
  REQUIRE(fs::exists(dir + "/a/checkpoints/step_4"));
  auto b = run_process(cmd + " run.output_dir=" + dir + "/b run.resume=" + dir +
                       "/a/checkpoints/step_4 --log-level warn");
  INFO(b.err);
  REQUIRE(b.exit_code == 0);
  const auto la = sculpt::test::train_losses(dir + "/a"), lb = sculpt::test::train_losses(dir + "/b");
  REQUIRE(la.size() == 12);
  int compared = 0;
  for (const auto& [step, loss] : lb) {
    if (step <= 4) continue;
    INFO("step " << step);
    CHECK(la.at(step) == loss);  // exact
    ++compared;
  }
  CHECK(compared == 8);
}
