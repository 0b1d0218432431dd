// Token datasets, .gz or raw, laid out as the DataSpec comment in dataset.h says.
//  tokens: a flat file of little-endian uint16/uint32 ids (language modelling). Sample k has
//          inputs = tokens [k*seq_len, (k+1)*seq_len) and targets = the same window shifted by
//          one (the next tokens), so every token but the first is predicted exactly once; a
//          tail shorter than a window is dropped.
//  jsonl:  one JSON object per line, {"text", "label"} (classification) or {"query", "target"}
//          (seq2seq), tokenized by split_words. The vocabulary, label ids and lengths always
//          come from the train file, so both parts share them.
#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "core/data/dataset.h"
#include "core/data/file_input.h"
#include "core/error.h"

namespace sculpt::data {

void TokenFileOptions::visit(config::Visitor& v) {
  v.file("file", file, "tokens: flat little-endian token ids (.gz or raw)", config::Need::required);
  v.file("test_file", test_file, "tokens: held-out token file (the test part)");
  v.choice("dtype", dtype, {"uint16", "uint32"}, "tokens: width of one token id in the files");
  v.field("seq_len", seq_len,
          "tokens: tokens per sample; sample k is tokens [k*seq_len, (k+1)*seq_len) and its targets the next ones",
          config::Range::at_least(1));
  v.field("vocab_size", vocab_size, "tokens: ids must be below it; 0: the train file's max + 1",
          config::Range::at_least(0));
}

void JsonlOptions::visit(config::Visitor& v) {
  v.file("file", file, "jsonl: JSON lines with text/label or query/target keys (.gz or raw)",
         config::Need::required);
  v.file("test_file", test_file, "jsonl: held-out JSON lines (the test part)");
  v.choice("tokenizer", tokenizer, {"word", "char"},
           "jsonl: word (lowercased words, punctuation apart) or char (every UTF-8 character)");
  v.field("max_source_len", max_source_len,
          "jsonl: text/query tokens kept (longer ones are cut); 0: the train file's longest",
          config::Range::at_least(0));
  v.field("max_target_len", max_target_len,
          "jsonl: seq2seq target tokens kept (longer ones are cut); 0: the train file's longest",
          config::Range::at_least(0));
  v.field("min_count", min_count,
          "jsonl: train-file words seen fewer times map to the unknown-word id",
          config::Range::at_least(1));
  v.choice(
      "mode", mode, {"auto", "classification", "seq2seq"},
      "jsonl: classification (text/label), seq2seq (query/target) or auto (first line's keys)");
}

std::vector<std::string> split_words(const std::string& text, bool chars) {
  std::vector<std::string> out;
  if (chars) {
    for (size_t i = 0; i < text.size();) {
      const auto lead = static_cast<unsigned char>(text[i]);
      const size_t len = lead < 0x80           ? 1
                         : (lead >> 5) == 0x6  ? 2
                         : (lead >> 4) == 0xe  ? 3
                         : (lead >> 3) == 0x1e ? 4
                                               : 1;
      size_t n = 1;
      while (n < len && i + n < text.size() && (static_cast<unsigned char>(text[i + n]) >> 6) == 2)
        ++n;
      if (n < len) n = 1;  // a broken UTF-8 sequence: one token per byte
      out.emplace_back(text, i, n);
      i += n;
    }
    return out;
  }
  std::string word;
  auto flush = [&] {
    if (!word.empty()) out.push_back(word);
    word.clear();
  };
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x80 && std::isspace(c)) {
      flush();
    } else if (c < 0x80 && std::ispunct(c)) {
      flush();
      out.emplace_back(1, ch);
    } else {
      word += c < 0x80 ? static_cast<char>(std::tolower(c)) : ch;
    }
  }
  flush();
  return out;
}

namespace {

// ---- tokens ----

// The ids of a token file as int64 [n].
at::Tensor read_token_file(const std::string& path, size_t width) {
  std::string b = read_maybe_gz(path);
  SCULPT_CHECK(b.size() % width == 0, path, ": size ", b.size(),
               " bytes is not a multiple of the token width ", width, " (dtype uint", 8 * width,
               ")");
  const auto n = static_cast<int64_t>(b.size() / width);
  auto t = at::empty({n}, at::kLong);
  int64_t* p = t.data_ptr<int64_t>();
  const auto* u = reinterpret_cast<const unsigned char*>(b.data());
  for (int64_t i = 0; i < n; ++i, u += width) {
    uint64_t v = 0;
    for (size_t k = 0; k < width; ++k) v |= uint64_t(u[k]) << (8 * k);
    p[i] = static_cast<int64_t>(v);
  }
  return t;
}

void check_tokens_below(const std::string& path, const at::Tensor& tokens, int64_t vocab_size) {
  const int64_t* p = tokens.data_ptr<int64_t>();
  for (int64_t i = 0; i < tokens.size(0); ++i)
    SCULPT_CHECK(p[i] < vocab_size, path, ": token ", p[i], " at position ", i,
                 " is not below vocab_size ", vocab_size);
}

std::unique_ptr<Dataset> load_tokens(const TokenFileOptions& o, DataPart part) {
  if (part == DataPart::test && o.test_file.empty()) return nullptr;
  const size_t width = o.dtype == "uint32" ? 4 : 2;
  const std::string& path = part == DataPart::train ? o.file : o.test_file;
  at::Tensor tokens = read_token_file(path, width);
  int64_t vocab_size = o.vocab_size;
  if (vocab_size == 0) {
    const at::Tensor train = part == DataPart::train ? tokens : read_token_file(o.file, width);
    SCULPT_CHECK(train.numel() > 0, o.file, ": no tokens");
    vocab_size = train.max().item<int64_t>() + 1;
  }
  check_tokens_below(path, tokens, vocab_size);
  const int64_t len = o.seq_len;
  SCULPT_CHECK(tokens.size(0) >= len + 1, path, ": ", tokens.size(0),
               " tokens, fewer than seq_len + 1 = ", len + 1);
  const int64_t n = (tokens.size(0) - 1) / len;
  DataSpec spec{{len}, 0, vocab_size};
  return std::make_unique<Dataset>(tokens.slice(0, 0, n * len).view({n, len}).contiguous(),
                                   tokens.slice(0, 1, n * len + 1).view({n, len}).contiguous(),
                                   spec);
}

// ---- jsonl ----

struct TextRow {
  std::vector<std::string> source, target;  // target: seq2seq only
  nlohmann::json label;                     // classification only: a string or an integer
  int64_t line = 0;
};

struct TextFile {
  bool seq2seq = false;
  std::vector<TextRow> rows;
};

// `mode`: classification | seq2seq | auto (decided by the first line's keys).
TextFile read_jsonl(const std::string& path, std::string mode, bool chars) {
  TextFile f;
  for_each_line(read_maybe_gz(path), [&](std::string_view line, int64_t line_no) {
    if (std::all_of(line.begin(), line.end(), [](char c) { return std::isspace(uint8_t(c)); }))
      return;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line.begin(), line.end());
    } catch (const nlohmann::json::exception& e) {  // parse_error, out_of_range (1e999)
      throw UserError(path + ":" + std::to_string(line_no) + ": not valid JSON: " + e.what());
    }
    SCULPT_CHECK(j.is_object(), path, ":", line_no, ": expected a JSON object, got ",
                 j.type_name());
    if (mode == "auto") {
      SCULPT_CHECK(j.contains("text") || j.contains("query"), path, ":", line_no,
                   ": expected the keys text and label, or query and target");
      mode = j.contains("query") ? "seq2seq" : "classification";
    }
    f.seq2seq = mode == "seq2seq";
    auto tokens = [&](const char* key) {
      SCULPT_CHECK(j.contains(key), path, ":", line_no, ": missing key '", key, "'");
      const auto& v = j.at(key);
      SCULPT_CHECK(v.is_string(), path, ":", line_no, ": '", key, "' must be a string, got ",
                   v.type_name());
      return split_words(v.get<std::string>(), chars);
    };
    TextRow row;
    row.line = line_no;
    row.source = tokens(f.seq2seq ? "query" : "text");
    if (f.seq2seq) {
      row.target = tokens("target");
    } else {
      SCULPT_CHECK(j.contains("label"), path, ":", line_no, ": missing key 'label'");
      row.label = j.at("label");
      SCULPT_CHECK(
          row.label.is_string() || (row.label.is_number_integer() && row.label.get<int64_t>() >= 0),
          path, ":", line_no, ": 'label' must be a string or a non-negative integer, got ",
          row.label.dump());
      SCULPT_CHECK(row.label.is_string() || row.label.get<int64_t>() < (1 << 16), path, ":",
                   line_no, ": label ", row.label.dump(), " is above the limit of 65535");
      SCULPT_CHECK(f.rows.empty() || f.rows[0].label.is_string() == row.label.is_string(), path,
                   ":", line_no, ": string and integer labels are mixed (line ", f.rows[0].line,
                   " has ", f.rows[0].label.dump(), ")");
    }
    f.rows.push_back(std::move(row));
  });
  SCULPT_CHECK(!f.rows.empty(), path, ": no JSON lines");
  return f;
}

// id -> word: the special tokens, then train-file words by descending count, then A-Z.
struct Vocabulary {
  std::vector<std::string> words{"<pad>", "<unk>", "<bos>", "<eos>"};
  std::unordered_map<std::string, int64_t> ids;

  Vocabulary(const TextFile& train, int64_t min_count) {
    std::map<std::string, int64_t> counts;
    for (const auto& row : train.rows) {
      for (const auto& w : row.source) ++counts[w];
      for (const auto& w : row.target) ++counts[w];
    }
    std::vector<std::pair<std::string, int64_t>> kept;
    for (const auto& [w, n] : counts)
      if (n >= min_count) kept.emplace_back(w, n);
    std::stable_sort(kept.begin(), kept.end(),
                     [](const auto& a, const auto& b) { return a.second > b.second; });
    for (const auto& kv : kept) {
      ids[kv.first] = static_cast<int64_t>(words.size());
      words.push_back(kv.first);
    }
  }
  // Writes the ids of the first `max_len` words to `out`; returns how many were written.
  int64_t encode(const std::vector<std::string>& text, int64_t max_len, int64_t* out) const {
    const int64_t n = std::min(max_len, static_cast<int64_t>(text.size()));
    for (int64_t i = 0; i < n; ++i) {
      auto it = ids.find(text[static_cast<size_t>(i)]);
      out[i] = it == ids.end() ? token::unk : it->second;
    }
    return n;
  }
};

int64_t longest(const TextFile& f, bool target) {
  size_t n = 0;
  for (const auto& row : f.rows) n = std::max(n, (target ? row.target : row.source).size());
  return static_cast<int64_t>(n);
}

// Class ids of `rows`: string labels by their rank among the train file's sorted labels,
// integer labels as they are (below the train file's max + 1).
at::Tensor label_ids(const std::string& path, const TextFile& rows, const TextFile& train,
                     int64_t& num_classes) {
  std::map<std::string, int64_t> names;
  int64_t max_int = -1;
  for (const auto& row : train.rows) {
    if (row.label.is_string())
      names.emplace(row.label.get<std::string>(), 0);
    else
      max_int = std::max(max_int, row.label.get<int64_t>());
  }
  int64_t next = 0;
  for (auto& kv : names) kv.second = next++;
  const bool strings = train.rows[0].label.is_string();
  num_classes = strings ? static_cast<int64_t>(names.size()) : max_int + 1;
  auto out = at::empty({static_cast<int64_t>(rows.rows.size())}, at::kLong);
  int64_t* p = out.data_ptr<int64_t>();
  for (const auto& row : rows.rows) {
    SCULPT_CHECK(row.label.is_string() == strings, path, ":", row.line, ": label ",
                 row.label.dump(), " is not a", strings ? " string" : "n integer",
                 " like the train file's labels");
    if (strings) {
      auto it = names.find(row.label.get<std::string>());
      SCULPT_CHECK(it != names.end(), path, ":", row.line, ": label ", row.label.dump(),
                   " does not occur in the train file");
      *p++ = it->second;
    } else {
      SCULPT_CHECK(row.label.get<int64_t>() < num_classes, path, ":", row.line, ": label ",
                   row.label.dump(), " is above the train file's largest label ", max_int);
      *p++ = row.label.get<int64_t>();
    }
  }
  return out;
}

std::unique_ptr<Dataset> load_jsonl(const JsonlOptions& o, DataPart part) {
  if (part == DataPart::test && o.test_file.empty()) return nullptr;
  const bool chars = o.tokenizer == "char";
  const TextFile train = read_jsonl(o.file, o.mode, chars);
  const Vocabulary vocab(train, o.min_count);
  const TextFile test =
      part == DataPart::test
          ? read_jsonl(o.test_file, train.seq2seq ? "seq2seq" : "classification", chars)
          : TextFile{};
  const TextFile& f = part == DataPart::train ? train : test;
  const auto n = static_cast<int64_t>(f.rows.size());
  DataSpec spec;
  spec.vocab_size = static_cast<int64_t>(vocab.words.size());
  spec.vocab = vocab.words;
  // At least one source position, so an empty source still marks seq2seq (source_len > 0).
  const int64_t src =
      o.max_source_len > 0 ? o.max_source_len : std::max<int64_t>(1, longest(train, false));
  if (!train.seq2seq) {
    auto x = at::full({n, src}, token::pad, at::kLong);
    int64_t* px = x.data_ptr<int64_t>();
    for (int64_t r = 0; r < n; ++r) vocab.encode(f.rows[size_t(r)].source, src, px + r * src);
    auto y = label_ids(part == DataPart::train ? o.file : o.test_file, f, train, spec.num_classes);
    spec.input_shape = {src};
    return std::make_unique<Dataset>(x, y, spec);
  }
  const int64_t tgt = o.max_target_len > 0 ? o.max_target_len : longest(train, true);
  const int64_t t = tgt + 1;  // bos + target (decoder input) or target + eos (targets)
  auto x = at::full({n, src + t}, token::pad, at::kLong);
  auto y = at::full({n, t}, token::pad, at::kLong);
  int64_t* px = x.data_ptr<int64_t>();
  int64_t* py = y.data_ptr<int64_t>();
  for (int64_t r = 0; r < n; ++r) {
    const TextRow& row = f.rows[size_t(r)];
    int64_t* in = px + r * (src + t);
    int64_t* out = py + r * t;
    vocab.encode(row.source, src, in);
    in[src] = token::bos;
    const int64_t m = vocab.encode(row.target, tgt, in + src + 1);
    std::copy(in + src + 1, in + src + 1 + m, out);
    out[m] = token::eos;
  }
  spec.input_shape = {src + t};
  spec.source_len = src;
  return std::make_unique<Dataset>(x, y, spec);
}

}  // namespace

void add_text_datasets(DatasetRegistry& r) {
  r.add(
      "tokens", "a flat uint16/uint32 token file for language modelling; test part: test_file",
      [](const config::DataConfig& c, DataPart part) {
        return load_tokens(options_of<TokenFileOptions>(c), part);
      },
      [] { return std::make_shared<TokenFileOptions>(); });
  r.add(
      "jsonl",
      "JSON lines: text/label classification or query/target seq2seq; test part: "
      "test_file",
      [](const config::DataConfig& c, DataPart part) {
        return load_jsonl(options_of<JsonlOptions>(c), part);
      },
      [] { return std::make_shared<JsonlOptions>(); });
}

}  // namespace sculpt::data
