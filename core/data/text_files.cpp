// data.name: text (text_files.h): jsonl / csv / tsv / plain-text records through a tokenizer,
// cached as a memory-mapped token file beside the data (the format: text_cache.h; the readers:
// text_records.h; tokenizing and the cache lookup: text_tokenized.h). The first tokenization
// and a cache hit go through the same reader (a fresh cache is read back from its bytes), so
// the rows are the same either way.
#include "core/data/text_files.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>

#include "core/data/file_input.h"
#include "core/data/text_cache.h"
#include "core/data/text_records.h"
#include "core/data/text_tokenized.h"
#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/logging/logging.h"
#include "core/text/tokenizer.h"

namespace sculpt::data {

namespace fs = std::filesystem;

void TextFilesOptions::visit(config::Visitor& v) {
  v.file("file", file,
         "text: training records, .jsonl, .csv, .tsv or plain text (one record per line; .gz too)",
         config::Need::required);
  v.file("test_file", test_file, "text: held-out records in the same format (the test part)");
  v.choice("format", format, {"auto", "jsonl", "csv", "tsv", "txt"},
           "text: the files' format; auto: by extension (.jsonl/.json, .csv, .tsv, else txt)");
  v.choice("shape", shape, {"auto", "classify", "pair", "seq2seq", "lm"},
           "text: classify (text, label), pair (text, pair, label), seq2seq (query, target), lm "
           "(packed causal-LM blocks); auto: lm for txt, else from the train file's first "
           "record (query field: seq2seq, pair field: pair, else classify)");
  v.field("tokenizer", tokenizer,
          "text: the tokenizer (a Hugging Face folder, tokenizer.json or .model file); empty: "
          "tokenizer.path, else model.path when model.name is hf");
  v.field("max_length", max_length,
          "text: ids per text with the special tokens (pair: both texts; seq2seq: the source); "
          "0: the train file's longest",
          config::Range::at_least(0));
  v.field("max_target_length", max_target_length,
          "text: seq2seq target ids (eos included); 0: the train file's longest",
          config::Range::at_least(0));
  v.choice("padding", padding, {"longest", "max_length"},
           "text: rows padded to the train file's longest (up to max_length) or to max_length");
  v.field("truncation", truncation,
          "text: cut texts longer than max_length (keeping the special tokens); false: such a "
          "text is an error naming file and line");
  v.field("add_special_tokens", add_special_tokens,
          "text: the tokenizer's template ([CLS] a [SEP], <s>, </s>) around every text");
  v.field("block_size", block_size, "text: lm: ids per sample (the targets: the next ids)",
          config::Range::at_least(1));
  v.choice("invalid_utf8", invalid_utf8, {"error", "replace"},
           "text: bytes that are not UTF-8: an error naming file, line and byte offset, or each "
           "bad sequence read as U+FFFD");
  v.field("labels", labels,
          "text: the label map, id = position in the list (a label outside it is an error); "
          "empty: the train file's labels, sorted (numerically when all are integers), saved in "
          "<run>/labels.json");
  v.field("text_field", text_field, "text: the field (jsonl key, csv column) of the text");
  v.field("pair_field", pair_field, "text: the field of the second text (shape pair)");
  v.field("label_field", label_field, "text: the field of the label (classify, pair)");
  v.field("query_field", query_field, "text: the field of the source text (seq2seq)");
  v.field("target_field", target_field, "text: the field of the target text (seq2seq)");
  v.field("pad_id", pad_id,
          "text: the id padding positions of the inputs hold; -1: negative, which every hf "
          "model reads as padding whatever the tokenizer's pad id (Sculpt's own transformers "
          "need 0)");
  v.choice("token_type_ids", token_type_ids, {"auto", "true", "false"},
           "text: pair: inputs [N, 2, L] with the tokenizer's token type ids (0 first text, 1 "
           "second) for models with segment embeddings; auto: when model.path is an hf "
           "checkpoint whose config.json has type_vocab_size >= 2 (BERT)");
  v.field("cache", cache,
          "text: keep the token ids in <file>.sculpt-tok-<key>.bin (or <run>/tokenized when the "
          "data folder is not writable) and reuse them while file, tokenizer and options agree");
}

void TextFilesOptions::check(config::Checker& c) const {
  // The rows are padded to these (int64 each): a config may not ask for terabytes.
  constexpr int64_t kMaxIds = int64_t(1) << 20;
  for (const auto& [key, v] : {std::pair<const char*, int64_t>{"max_length", max_length},
                               {"max_target_length", max_target_length},
                               {"block_size", block_size}})
    if (v > kMaxIds)
      c.error(key, std::string(key) + ": " + std::to_string(v) + " is more than " +
                       std::to_string(kMaxIds) + " ids per row");
  if (padding == "max_length" && max_length == 0)
    c.error("padding", "padding: max_length needs data.max_length > 0");
  if (!truncation && max_length == 0)
    c.error("truncation", "truncation: false checks texts against data.max_length; set it > 0");
  if (shape == "pair" && pair_field.empty())
    c.error("pair_field", "shape pair needs data.pair_field (the field of the second text)");
  std::error_code ec;
  if (!tokenizer.empty() && !fs::exists(tokenizer, ec))
    c.error("tokenizer", "tokenizer not found: " + tokenizer);
  std::set<std::string> seen;
  for (const auto& l : labels)
    if (!seen.insert(l).second) c.error("labels", "label '" + l + "' is listed twice");
}

namespace {

using namespace textdata;

// ---- the ids a text dataset takes from its tokenizer and model ----

// What an hf checkpoint's config.json says (-1: not said).
struct HfIds {
  std::string file;
  int64_t decoder_start = -1, eos = -1, pad = -1, type_vocab = -1;
};

HfIds hf_ids(const std::string& dir) {
  HfIds h;
  if (dir.empty()) return h;
  const fs::path file = fs::path(dir) / "config.json";
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) return h;  // the model's loader names what is missing
  std::ifstream in(file);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw UserError(file.string() + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) return h;
  h.file = file.string();
  // An integer, or the first of a list of them (generation configs list several eos ids).
  auto id = [&](const char* key) -> int64_t {
    auto it = j.find(key);
    if (it == j.end()) return -1;
    const nlohmann::json& v = it->is_array() && !it->empty() ? (*it)[0] : *it;
    return v.is_number_integer() ? v.get<int64_t>() : -1;
  };
  h.decoder_start = id("decoder_start_token_id");
  h.eos = id("eos_token_id");
  h.pad = id("pad_token_id");
  h.type_vocab = id("type_vocab_size");
  return h;
}

// seq2seq: the decoder's start, the id every target ends with, and one never generated.
struct Seq2SeqIds {
  int64_t start = 0, eos = -1, pad = -1;
};

Seq2SeqIds seq2seq_ids(const text::Tokenizer& tok, const HfIds& hf) {
  for (const auto& [key, v] : {std::pair<const char*, int64_t>{"decoder_start_token_id",
                                                               hf.decoder_start},
                               {"eos_token_id", hf.eos}})
    SCULPT_CHECK(v < tok.vocab_size(), hf.file, ": ", key, " ", v,
                 " is outside the tokenizer's vocabulary (", tok.vocab_size(), " ids)");
  Seq2SeqIds s;
  s.start = hf.decoder_start >= 0 ? hf.decoder_start
            : tok.pad_id()        ? *tok.pad_id()
            : tok.bos_id()        ? *tok.bos_id()
                                  : 0;
  s.eos = hf.eos >= 0 ? hf.eos : tok.eos_id() ? *tok.eos_id() : -1;
  s.pad = tok.pad_id() ? *tok.pad_id() : hf.pad;
  return s;
}

// ---- rows ----

int64_t row_len(const int64_t* off, int64_t r) { return off[r + 1] - off[r]; }

// What the options, the tokenizer and the hf checkpoint decide beyond the cached ids.
struct Decided {
  Seq2SeqIds seq2seq;
  bool type_ids = false;  // pair rows as [2, L]: ids, token type ids
};

Decided decide(const TextFilesOptions& o, Shape shape, const text::Tokenizer& tok,
               const TextFilesContext& ctx) {
  const bool reads_model =
      shape == Shape::seq2seq || (shape == Shape::pair && o.token_type_ids == "auto");
  const HfIds hf = reads_model ? hf_ids(ctx.hf_model_path) : HfIds{};
  Decided d;
  if (shape == Shape::seq2seq) d.seq2seq = seq2seq_ids(tok, hf);
  d.type_ids = shape == Shape::pair &&
               (o.token_type_ids == "true" || (o.token_type_ids == "auto" && hf.type_vocab >= 2));
  return d;
}

std::unique_ptr<Dataset> build_rows(const TextFilesOptions& o, const LoadedFile& f,
                                    const LoadedFile& train, const text::Tokenizer& tok,
                                    const Decided& d, const TextFilesContext& ctx,
                                    bool is_train) {
  const TokenView& v = f.view;
  DataSpec spec;
  spec.vocab_size = tok.vocab_size();
  if (v.shape == Shape::lm) {
    const int64_t b = o.block_size, n = (v.n_ids - 1) / b;
    SCULPT_CHECK(n >= 1, f.path, ": ", v.n_ids, " ids, fewer than data.block_size + 1 = ", b + 1);
    auto all = at::empty({n * b + 1}, at::kLong);
    int64_t* p = all.data_ptr<int64_t>();
    for (int64_t i = 0; i < n * b + 1; ++i) p[i] = v.ids[i];
    spec.input_shape = {b};
    return std::make_unique<Dataset>(all.slice(0, 0, n * b).view({n, b}),
                                     all.slice(0, 1, n * b + 1).view({n, b}).contiguous(), spec);
  }
  const int64_t n = v.rows;
  const int64_t longest = std::max<int64_t>(1, train.view.longest);
  const int64_t len = o.padding == "max_length" ? o.max_length
                      : o.max_length > 0        ? std::min(o.max_length, longest)
                                                : longest;
  // Padding to the longest text is what the data asks for, not the config: one very long
  // record among many short ones may not make the rows take more than 64 times the memory of
  // the ids themselves (16 Mi cells at least).
  auto check_padding = [&](int64_t width, bool from_data) {
    const int64_t ids = v.n_ids + v.n_target_ids + n;
    const int64_t budget = std::max<int64_t>(int64_t(1) << 24, 64 * ids);
    SCULPT_CHECK(!from_data || n <= budget / std::max<int64_t>(1, width), f.path, ": padding its ",
                 n, " rows to the longest text (", width, " ids) takes ", n, " x ", width,
                 " ids, more than 64 times its ", ids,
                 " ids (a few very long records?); set "
                 "data.max_length (and max_target_length): longer texts are cut to it");
  };
  int64_t cut = 0;
  auto fill = [&](int64_t* dst, const int32_t* src, int64_t m, int64_t width) {
    if (m > width) ++cut;
    m = std::min(m, width);
    for (int64_t i = 0; i < m; ++i) dst[i] = src[i];
  };
  if (v.shape == Shape::seq2seq) {
    const int64_t s = len;
    const int64_t t = std::max<int64_t>(
        1, o.max_target_length > 0 && o.padding == "max_length" ? o.max_target_length
                                                                : train.view.longest_target);
    check_padding(s + t, o.max_length == 0 || o.max_target_length == 0);
    auto x = at::full({n, s + t}, o.pad_id, at::kLong);
    auto y = at::full({n, t}, token::pad, at::kLong);
    int64_t* px = x.data_ptr<int64_t>();
    int64_t* py = y.data_ptr<int64_t>();
    const int64_t start = d.seq2seq.start;
    for (int64_t r = 0; r < n; ++r) {
      int64_t* in = px + r * (s + t);
      fill(in, v.ids + v.offsets[r], row_len(v.offsets, r), s);
      const int64_t m = std::min(row_len(v.target_offsets, r), t);
      const int32_t* tgt = v.target_ids + v.target_offsets[r];
      in[s] = start;
      for (int64_t i = 0; i + 1 < m; ++i) in[s + 1 + i] = tgt[i];
      for (int64_t i = 0; i < m; ++i) py[r * t + i] = tgt[i];
    }
    if (cut > 0) log::warn("data: ", f.path, ": ", cut, " sources cut to ", s, " ids");
    spec.input_shape = {s + t};
    spec.source_len = s;
    spec.decoder_start_id = start;
    spec.eos_id = d.seq2seq.eos;
    spec.pad_id = d.seq2seq.pad;
    return std::make_unique<Dataset>(x, y, spec);
  }
  // classify / pair: the label map.
  std::vector<std::string> map = o.labels;
  const bool listed = !map.empty();
  if (!listed) map = train.view.labels;
  std::unordered_map<std::string, int64_t> id;
  for (size_t k = 0; k < map.size(); ++k) id[map[k]] = static_cast<int64_t>(k);
  std::vector<int64_t> of_file(v.labels.size(), -1);  // this file's label index -> class id
  for (size_t k = 0; k < v.labels.size(); ++k) {
    auto it = id.find(v.labels[k]);
    if (it != id.end()) of_file[k] = it->second;
  }
  // With type ids: per row, `len` ids then `len` type ids (padding type 0).
  const int64_t planes = d.type_ids ? 2 : 1;
  check_padding(planes * len, o.max_length == 0);
  auto x = at::full({n, planes, len}, o.pad_id, at::kLong);
  if (d.type_ids) x.select(1, 1).fill_(0);
  auto y = at::empty({n}, at::kLong);
  int64_t* px = x.data_ptr<int64_t>();
  int64_t* py = y.data_ptr<int64_t>();
  for (int64_t r = 0; r < n; ++r) {
    const int64_t c = of_file[static_cast<size_t>(v.label_ids[r])];
    if (c < 0) {
      std::string known;
      for (size_t k = 0; k < map.size() && k < 20; ++k) known += (k ? ", " : "") + map[k];
      if (map.size() > 20) known += ", ...";
      throw UserError(where(f.path, v.lines[r]) + ": label '" + v.labels[size_t(v.label_ids[r])] +
                      "' is not in the label map (" +
                      (listed ? "data.labels" : "the labels of " + train.path) + ": " + known +
                      ")");
    }
    py[r] = c;
    int64_t* row = px + r * planes * len;
    fill(row, v.ids + v.offsets[r], row_len(v.offsets, r), len);
    if (d.type_ids) {
      const uint8_t* types = v.type_ids + v.offsets[r];
      for (int64_t i = 0; i < std::min(row_len(v.offsets, r), len); ++i) row[len + i] = types[i];
    }
  }
  if (cut > 0) log::warn("data: ", f.path, ": ", cut, " texts cut to ", len, " ids");
  if (d.type_ids) {
    spec.input_shape = {2, len};
    spec.token_type_ids = true;
  } else {
    x = x.view({n, len});
    spec.input_shape = {len};
  }
  spec.num_classes = static_cast<int64_t>(map.size());
  SCULPT_CHECK(spec.num_classes >= 2 || !is_train, f.path, ": one label only (",
               map.empty() ? "" : map[0], "); classification needs two or more");
  if (is_train && !ctx.run_dir.empty() && fs::is_directory(ctx.run_dir)) {
    nlohmann::json j = {{"labels", map},
                        {"from", listed ? "data.labels" : "the train file " + train.path}};
    try {
      io::write_file_atomic((fs::path(ctx.run_dir) / "labels.json").string(), j.dump(2) + "\n");
    } catch (const std::exception& e) {
      log::warn("data: labels.json not written: ", e.what());
    }
  }
  return std::make_unique<Dataset>(x, y, spec);
}

}  // namespace

std::unique_ptr<Dataset> load_text_files(const TextFilesOptions& o, DataPart part,
                                         const text::Tokenizer& tok, const TextFilesContext& ctx) {
  if (part == DataPart::test && o.test_file.empty()) return nullptr;
  const std::string format = format_of(o, o.file);
  Shape shape;
  if (o.shape != "auto" || format == "txt") {
    shape = o.shape == "auto" ? Shape::lm : parse_shape(o.shape);
  } else {
    // From the train file's first record (read up to its first line break only when plain).
    const std::string raw = read_raw(o.file);
    shape = resolve_shape(o, format, is_gzip(raw) ? read_maybe_gz(o.file) : raw, o.file);
  }
  const Decided d = decide(o, shape, tok, ctx);
  LoadedFile train;
  load_file(train, o, o.file, format, shape, tok, d.seq2seq.eos, ctx);
  if (part == DataPart::train) return build_rows(o, train, train, tok, d, ctx, true);
  LoadedFile test;
  load_file(test, o, o.test_file, format_of(o, o.test_file), shape, tok, d.seq2seq.eos, ctx);
  return build_rows(o, test, train, tok, d, ctx, false);
}

std::string text_cache_path(const TextFilesOptions& o, const std::string& file,
                            const text::Tokenizer& tok, const TextFilesContext& ctx) {
  const std::string format = format_of(o, file);
  Shape shape = parse_shape(o.shape);
  if (o.shape == "auto") {
    const std::string raw = read_raw(o.file);
    shape = resolve_shape(o, format_of(o, o.file), is_gzip(raw) ? read_maybe_gz(o.file) : raw,
                          o.file);
  }
  const std::string raw = read_raw(file);
  Expect want{hex64(hash_bytes(raw.data(), raw.size())), tok.fingerprint(),
              ids_options(o, format, shape, decide(o, shape, tok, ctx).seq2seq.eos),
              tok.vocab_size()};
  return (fs::path(file).parent_path() / cache_name(file, key_of(want))).string();
}

namespace {
// One tokenizer per path for the process (the train and test parts, the passes' sample rows).
std::shared_ptr<const text::Tokenizer> tokenizer_at(const std::string& path) {
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<const text::Tokenizer>> loaded;
  std::lock_guard<std::mutex> guard(mu);
  auto& t = loaded[path];
  if (!t) t = text::load_tokenizer(path);
  return t;
}
}  // namespace

void add_text_file_datasets(DatasetRegistry& r) {
  r.add(
      "text",
      "jsonl / csv / tsv / plain-text records through a tokenizer (classify, pair, seq2seq, lm), "
      "cached as token files beside the data; test part: test_file",
      [](const config::DataConfig& c, DataPart part) -> std::unique_ptr<Dataset> {
        const auto& o = options_of<TextFilesOptions>(c);
        if (part == DataPart::test && o.test_file.empty()) return nullptr;
        const std::string path = !o.tokenizer.empty() ? o.tokenizer : c.default_tokenizer;
        SCULPT_CHECK(!path.empty(),
                     "data.tokenizer: data.name text reads text through a tokenizer; set "
                     "data.tokenizer or tokenizer.path (an hf model's folder is the default)");
        const auto tok = tokenizer_at(path);
        return load_text_files(o, part, *tok, TextFilesContext{c.run_dir, 0, c.hf_model_path});
      },
      [] { return std::make_shared<TextFilesOptions>(); });
}

}  // namespace sculpt::data
