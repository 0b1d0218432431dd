// The readers of data.name: text (core/data/text_records.cpp, text_cache.cpp, text_files.cpp,
// text_tokenized.cpp, compiled instrumented into the harness) for fuzz_data.cpp: the records of
// jsonl / csv / tsv / plain-text files, the token cache's reader, and the whole dataset through
// a small WordLevel tokenizer (core/text from libsculpt_core).
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "core/data/file_input.h"
#include "core/data/text_cache.h"
#include "core/data/text_files.h"
#include "core/data/text_records.h"
#include "core/logging/logging.h"
#include "core/text/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

namespace sculpt::fuzz {

namespace textdata = data::textdata;

namespace {

const char* const kFormats[] = {"jsonl", "csv", "tsv", "txt"};

// What a cache must say to be read (the corpus's cache seeds say it).
textdata::Expect cache_expect() {
  textdata::Expect want;
  want.data_hash = "d";
  want.tokenizer = "t";
  want.options = "o";
  want.vocab_size = 64;
  return want;
}

const text::Tokenizer& tokenizer() {
  static const std::unique_ptr<text::Tokenizer> tok = [] {
    log::set_level(log::Level::error);  // not a line per input ("tokenized ...", "cut ...")
    const std::string path = scratch() + "/fuzz-tokenizer.json";
    std::ofstream(path) << R"({"added_tokens": [{"id": 1, "content": "<s>", "special": true},
      {"id": 2, "content": "</s>", "special": true}],
      "normalizer": {"type": "Lowercase"}, "pre_tokenizer": {"type": "Whitespace"},
      "post_processor": {"type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "</s>", "type_id": 1}},
                 {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1]}, "</s>": {"id": "</s>", "ids": [2]}}},
      "model": {"type": "WordLevel", "unk_token": "<unk>", "vocab": {"<unk>": 0, "<s>": 1,
        "</s>": 2, "the": 3, "a": 4, "cat": 5, "dog": 6, "sat": 7, ",": 8, "!": 9, "pos": 10}}})";
    return text::load_tokenizer(path);
  }();
  return *tok;
}

}  // namespace

const char* text_extension(int variant) {
  return kFormats[variant & 3];
}

// Records of `path` (its format by extension) with invalid UTF-8 an error or replaced
// (variant bit 2), the fields of the shape the file's first record gives.
void load_text_records(const std::string& path, int variant) {
  data::TextFilesOptions o;
  const std::string format = textdata::format_of(o, path);
  std::string raw = textdata::read_raw(path);
  if (textdata::is_gzip(raw)) raw = data::read_maybe_gz(path);
  const std::string text = textdata::checked_utf8(std::move(raw), path, variant & 4);
  const textdata::Shape shape = textdata::resolve_shape(o, format, text, path);
  const textdata::Fields f = textdata::fields_of(o, shape);
  std::vector<textdata::Record> recs;
  if (format == "jsonl")
    recs = textdata::read_jsonl(text, path, f);
  else if (format == "txt")
    recs = textdata::read_txt(text);
  else
    recs = textdata::read_csv(text, path, format == "tsv" ? '\t' : ',', f);
  std::vector<std::string> labels;
  for (const auto& r : recs) labels.push_back(r.label);
  textdata::sort_labels(labels);
}

// Cache bytes: refused with a reason, or a view whose every row is inside the bytes.
void parse_token_cache(const std::string& bytes) {
  textdata::TokenView v;
  if (!textdata::parse_cache(bytes.data(), bytes.size(), cache_expect(), v).empty()) return;
  // Every value read (unsigned sums: line numbers are whatever the file says).
  uint64_t sum = 0;
  for (int64_t r = 0; r < v.rows && v.offsets; ++r)
    for (int64_t i = v.offsets[r]; i < v.offsets[r + 1]; ++i) sum += uint64_t(v.ids[i]);
  for (int64_t r = 0; r < v.rows && v.target_offsets; ++r)
    for (int64_t i = v.target_offsets[r]; i < v.target_offsets[r + 1]; ++i)
      sum += uint64_t(v.target_ids[i]);
  for (int64_t r = 0; r < v.rows && v.label_ids; ++r)
    sum += v.labels.at(size_t(v.label_ids[r])).size();
  for (int64_t r = 0; r < v.rows && v.lines; ++r) sum += uint64_t(v.lines[r]);
  static volatile uint64_t sink;
  sink = sum;
  if (v.longest < 0 || v.longest_target < 0) std::abort();
}

// The whole dataset (train and test parts, no cache) of `path` (its format by extension) in a
// shape (variant bits 2-4), with max_length 5 (bit 5), padded to it (bit 6), truncation off
// (bit 7); invalid UTF-8 replaced when `replace`.
void load_text_dataset(const std::string& path, int variant, bool replace) {
  static const char* const kShapes[] = {"auto", "classify", "pair",     "seq2seq",
                                        "lm",   "auto",     "classify", "lm"};
  data::TextFilesOptions o;
  o.file = o.test_file = path;
  o.shape = kShapes[(variant >> 2) & 7];
  o.pair_field = "pair";
  o.cache = false;
  o.block_size = 4;
  o.max_length = variant & 32 ? 5 : 0;
  o.max_target_length = variant & 32 ? 3 : 0;
  o.padding = variant & 64 && o.max_length ? "max_length" : "longest";
  o.truncation = !(variant & 128) || o.max_length == 0;
  o.invalid_utf8 = replace ? "replace" : "error";
  const data::TextFilesContext ctx{"", 1, ""};
  (void)data::load_text_files(o, data::DataPart::train, tokenizer(), ctx);
  (void)data::load_text_files(o, data::DataPart::test, tokenizer(), ctx);
}

}  // namespace sculpt::fuzz
