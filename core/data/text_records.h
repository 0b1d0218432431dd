// The records of data.name: text (text_files.h) read from jsonl, csv/tsv and plain-text files:
// UTF-8 checking, the fields of each shape, the label order. Internal to core/data: every
// failure is a UserError naming the file and line.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/data/text_files.h"
#include "core/text/tokenizer.h"

namespace sculpt::data::textdata {

enum class Shape { classify, pair, seq2seq, lm };
const char* shape_name(Shape s);
Shape parse_shape(const std::string& s);

// data.format, or (auto) the format the file's extension names (.gz looked through).
std::string format_of(const TextFilesOptions& o, const std::string& path);

// The file's bytes as they are (gzip or not).
std::string read_raw(const std::string& path);
bool is_gzip(const std::string& raw);

// `text` checked as UTF-8: unchanged when valid; otherwise an error naming the file, the line
// and the byte offset, or (replace) a copy with every ill-formed subpart as U+FFFD.
std::string checked_utf8(std::string text, const std::string& path, bool replace);

struct Record {
  int64_t line = 0;
  std::string text, pair, label;  // seq2seq: text = the query, pair = the target
};

struct Fields {
  std::string text, pair, label;  // keys read; "" when the shape has none
};
Fields fields_of(const TextFilesOptions& o, Shape s);

// "path:line", the prefix of every error about a record.
std::string where(const std::string& path, int64_t line);

std::vector<Record> read_jsonl(const std::string& text, const std::string& path, const Fields& f);
// CSV records (RFC 4180: quoted fields with "" for a quote and line breaks inside), each with
// the line it starts on; `sep`: ',' or '\t'. The first record names the columns.
std::vector<Record> read_csv(const std::string& text, const std::string& path, char sep,
                             const Fields& f);
std::vector<Record> read_txt(const std::string& text);

// The shape `auto` means for the train file: lm for plain text; else by the first record's
// fields (jsonl keys, csv columns).
Shape resolve_shape(const TextFilesOptions& o, const std::string& format, const std::string& text,
                    const std::string& path);

// Every record's encoding by `tok` (with the pair when `pairs`; only the target, `pair`, when
// `targets`) on `threads` threads (0: every core). A tokenizer error is a UserError naming
// `path` and the record's line.
std::vector<text::Encoding> encode_all(const text::Tokenizer& tok, const std::string& path,
                                       const std::vector<Record>& recs, bool pairs, bool targets,
                                       const text::EncodeOptions& eo, int threads);

// Sorted: numerically when every label is an integer, else as byte strings.
void sort_labels(std::vector<std::string>& labels);

}  // namespace sculpt::data::textdata
