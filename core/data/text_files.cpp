// data.name: text (text_files.h): jsonl / csv / tsv / plain-text records through a tokenizer,
// cached as a memory-mapped token file beside the data.
//
// The cache file (`<file>.sculpt-tok-<key>.bin`, version 1), every section 8-byte aligned:
//   "SCULPTTK" | u32 version | u32 header bytes | header JSON | sections ... | "SCULPTOK"
// The header names the data file's hash, the tokenizer's fingerprint, the options that change
// the ids, the shape, the counts and every section's [offset, bytes]:
//   lines int64[rows]          the record's line in the data file (errors name it)
//   label_ids int32[rows]      classify/pair: index into header.labels (the file's labels, sorted)
//   offsets int64[rows + 1]    ids of row r: ids[offsets[r], offsets[r + 1])
//   ids int32[...]             (lm: the whole stream, every record + eos)
//   target_offsets, target_ids seq2seq targets (ending with eos when the tokenizer has one)
// A cache whose size, trailer, header or ids do not check out, or that another file, tokenizer
// or set of options wrote, is never used: a warning, then it is rebuilt. The first tokenization
// and a cache hit go through the same reader (a fresh cache is read back from its bytes), so the
// rows are the same either way.
#include "core/data/text_files.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>
#include <type_traits>
#include <unordered_map>

#include "core/data/file_input.h"
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
  v.field("cache", cache,
          "text: keep the token ids in <file>.sculpt-tok-<key>.bin (or <run>/tokenized when the "
          "data folder is not writable) and reuse them while file, tokenizer and options agree");
}

void TextFilesOptions::check(config::Checker& c) const {
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

constexpr uint32_t kVersion = 1;
constexpr char kMagic[9] = "SCULPTTK";
constexpr char kTrailer[9] = "SCULPTOK";

enum class Shape { classify, pair, seq2seq, lm };
const char* shape_name(Shape s) {
  switch (s) {
    case Shape::classify: return "classify";
    case Shape::pair: return "pair";
    case Shape::seq2seq: return "seq2seq";
    case Shape::lm: return "lm";
  }
  return "?";
}
Shape parse_shape(const std::string& s) {
  if (s == "pair") return Shape::pair;
  if (s == "seq2seq") return Shape::seq2seq;
  if (s == "lm") return Shape::lm;
  return Shape::classify;
}

std::string format_of(const TextFilesOptions& o, const std::string& path) {
  if (o.format != "auto") return o.format;
  std::string p = path;
  if (p.size() > 3 && p.compare(p.size() - 3, 3, ".gz") == 0) p.resize(p.size() - 3);
  const std::string ext = fs::path(p).extension().string();
  if (ext == ".jsonl" || ext == ".json" || ext == ".ndjson") return "jsonl";
  if (ext == ".csv") return "csv";
  if (ext == ".tsv") return "tsv";
  return "txt";
}

// ---- hashing (cache keys; not cryptographic) ----

uint64_t mix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

// Four independent lanes of 8 bytes, then the tail: about memory speed.
uint64_t hash_bytes(const char* p, size_t n, uint64_t seed = 0) {
  uint64_t lane[4] = {seed ^ 0x9e3779b97f4a7c15ull, seed + 0x632be59bd9b4e019ull,
                      seed ^ 0x8cb92ba72f3d8dd7ull, seed - 0x52dce729da3ed8fbull};
  size_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int k = 0; k < 4; ++k) {
      uint64_t w;
      std::memcpy(&w, p + i + 8 * k, 8);
      lane[k] = (lane[k] ^ w) * 0x100000001b3ull;
      lane[k] = (lane[k] << 31) | (lane[k] >> 33);
    }
  uint64_t h = n;
  for (int k = 0; k < 4; ++k) h = mix(h ^ lane[k]) * 0x9e3779b97f4a7c15ull;
  for (; i < n; ++i) h = (h ^ static_cast<unsigned char>(p[i])) * 0x100000001b3ull;
  return mix(h);
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// ---- raw files ----

std::string read_raw(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  SCULPT_CHECK(in.good(), path, ": cannot open");
  in.seekg(0, std::ios::end);
  std::string b(static_cast<size_t>(in.tellg()), '\0');
  in.seekg(0);
  in.read(b.data(), static_cast<std::streamsize>(b.size()));
  SCULPT_CHECK(in.good() || b.empty(), path, ": cannot read");
  return b;
}

bool is_gzip(const std::string& raw) {
  return raw.size() >= 2 && static_cast<unsigned char>(raw[0]) == 0x1f &&
         static_cast<unsigned char>(raw[1]) == 0x8b;
}

// ---- UTF-8 ----

// At p (n > 0 bytes left): true and the length of one well-formed sequence (Unicode 3.9,
// table 3-7), or false and the length of the maximal ill-formed subpart (>= 1), which
// `replace` turns into one U+FFFD, as Python's errors="replace" does.
bool utf8_step(const unsigned char* p, size_t n, size_t& len) {
  const unsigned c = p[0];
  if (c < 0x80) return len = 1, true;
  size_t need;
  unsigned lo = 0x80, hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) {
    need = 1;
  } else if (c >= 0xe0 && c <= 0xef) {
    need = 2;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    need = 3;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else {
    return len = 1, false;
  }
  for (size_t k = 1; k <= need; ++k) {
    const unsigned b = k < n ? p[k] : 0x100;
    const bool ok = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xbf);
    if (!ok) return len = k, false;
  }
  return len = need + 1, true;
}

// `text` checked as UTF-8: unchanged when valid; otherwise an error naming the file, the line
// and the byte offset, or (replace) a copy with every ill-formed subpart as U+FFFD.
std::string checked_utf8(std::string text, const std::string& path, bool replace) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  auto skip_ascii = [&] {
    while (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
  };
  size_t len = 0;
  for (;;) {
    skip_ascii();
    if (i >= n) return text;
    if (!utf8_step(p + i, n - i, len)) break;
    i += len;
  }
  if (!replace) {
    const size_t line_start = text.rfind('\n', i == 0 ? 0 : i - 1);
    const size_t col = line_start == std::string::npos || i == 0 ? i : i - line_start - 1;
    const int64_t line = 1 + std::count(text.begin(), text.begin() + static_cast<int64_t>(i), '\n');
    char byte[8];
    std::snprintf(byte, sizeof byte, "0x%02x", p[i]);
    throw UserError(path + ":" + std::to_string(line) + ": not valid UTF-8 at byte offset " +
                    std::to_string(i) + " (byte " + std::to_string(col) + " of the line, " +
                    byte + "); data.invalid_utf8: replace reads it as U+FFFD");
  }
  std::string out(text, 0, i);
  out.reserve(n + 16);
  while (i < n) {
    if (utf8_step(p + i, n - i, len)) {
      out.append(text, i, len);
    } else {
      out += "\xEF\xBF\xBD";
    }
    i += len;
  }
  return out;
}

// ---- records ----

struct Record {
  int64_t line = 0;
  std::string text, pair, label;  // seq2seq: text = the query, pair = the target
};

struct Fields {
  std::string text, pair, label;  // keys read; "" when the shape has none
};

Fields fields_of(const TextFilesOptions& o, Shape s) {
  switch (s) {
    case Shape::classify: return {o.text_field, "", o.label_field};
    case Shape::pair: return {o.text_field, o.pair_field, o.label_field};
    case Shape::seq2seq: return {o.query_field, o.target_field, ""};
    case Shape::lm: return {o.text_field, "", ""};
  }
  return {};
}

std::string where(const std::string& path, int64_t line) {
  return path + ":" + std::to_string(line);
}

// A label as text: a JSON string as it is, an integer in decimal.
std::string label_text(const nlohmann::json& v, const std::string& path, int64_t line,
                       const std::string& key) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return v.dump();
  throw UserError(where(path, line) + ": field '" + key +
                  "' must be a string or an integer, got " + v.dump());
}

bool all_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return std::isspace(uint8_t(c)); });
}

std::vector<Record> read_jsonl(const std::string& text, const std::string& path, Shape shape,
                               const Fields& f) {
  std::vector<Record> out;
  for_each_line(text, [&](std::string_view line, int64_t line_no) {
    if (all_blank(line)) return;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line.begin(), line.end());
    } catch (const nlohmann::json::parse_error& e) {
      throw UserError(where(path, line_no) + ": not valid JSON: " + e.what());
    }
    SCULPT_CHECK(j.is_object(), where(path, line_no), ": expected a JSON object, got ",
                 j.type_name());
    Record r;
    r.line = line_no;
    auto get = [&](const std::string& key, bool label) -> std::string {
      auto it = j.find(key);
      SCULPT_CHECK(it != j.end(), where(path, line_no), ": missing field '", key, "'");
      if (label) return label_text(*it, path, line_no, key);
      SCULPT_CHECK(it->is_string(), where(path, line_no), ": field '", key,
                   "' must be a string, got ", it->type_name());
      return it->get<std::string>();
    };
    r.text = get(f.text, false);
    if (!f.pair.empty()) r.pair = get(f.pair, false);
    if (!f.label.empty()) r.label = get(f.label, true);
    (void)shape;
    out.push_back(std::move(r));
  });
  return out;
}

// CSV records (RFC 4180: quoted fields with "" for a quote and line breaks inside), each with
// the line it starts on. `sep`: ',' or '\t'.
std::vector<std::pair<int64_t, std::vector<std::string>>> csv_records(const std::string& text,
                                                                      char sep) {
  std::vector<std::pair<int64_t, std::vector<std::string>>> out;
  size_t i = 0;
  const size_t n = text.size();
  int64_t line = 1;
  while (i < n) {
    const int64_t start_line = line;
    std::vector<std::string> rec;
    std::string field;
    bool quoted = false, any = false;
    for (;;) {
      if (i >= n) {
        rec.push_back(std::move(field));
        break;
      }
      const char c = text[i];
      if (quoted) {
        if (c == '"') {
          if (i + 1 < n && text[i + 1] == '"') {
            field += '"';
            i += 2;
          } else {
            quoted = false;
            ++i;
          }
        } else {
          if (c == '\n') ++line;
          field += c;
          ++i;
        }
        continue;
      }
      if (c == '"' && field.empty()) {
        quoted = any = true;
        ++i;
      } else if (c == sep) {
        rec.push_back(std::move(field));
        field.clear();
        any = true;
        ++i;
      } else if (c == '\n' || c == '\r') {
        rec.push_back(std::move(field));
        if (c == '\r' && i + 1 < n && text[i + 1] == '\n') ++i;
        ++i;
        ++line;
        break;
      } else {
        field += c;
        any = true;
        ++i;
      }
    }
    if (!any && rec.size() == 1 && rec[0].empty()) continue;  // a blank line
    out.emplace_back(start_line, std::move(rec));
  }
  return out;
}

std::vector<Record> read_csv(const std::string& text, const std::string& path, char sep,
                             const Fields& f, std::vector<std::string>* header_out = nullptr) {
  auto recs = csv_records(text, sep);
  SCULPT_CHECK(!recs.empty(), path, ": no header line (the first line names the columns)");
  const auto& header = recs[0].second;
  if (header_out) *header_out = header;
  auto column = [&](const std::string& key) -> size_t {
    if (key.empty()) return SIZE_MAX;
    auto it = std::find(header.begin(), header.end(), key);
    if (it == header.end()) {
      std::string cols;
      for (const auto& h : header) cols += (cols.empty() ? "" : ", ") + h;
      throw UserError(where(path, recs[0].first) + ": missing field '" + key +
                      "': no such column in the header (columns: " + cols + ")");
    }
    return static_cast<size_t>(it - header.begin());
  };
  const size_t ct = column(f.text), cp = column(f.pair), cl = column(f.label);
  std::vector<Record> out;
  out.reserve(recs.size() - 1);
  for (size_t k = 1; k < recs.size(); ++k) {
    auto& [line, rec] = recs[k];
    auto get = [&](size_t col, const std::string& key) {
      SCULPT_CHECK(col < rec.size(), where(path, line), ": missing field '", key, "' (",
                   rec.size(), " fields, the header has ", header.size(), ")");
      return std::move(rec[col]);
    };
    Record r;
    r.line = line;
    r.text = get(ct, f.text);
    if (cp != SIZE_MAX) r.pair = get(cp, f.pair);
    if (cl != SIZE_MAX) r.label = get(cl, f.label);
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<Record> read_txt(const std::string& text) {
  std::vector<Record> out;
  for_each_line(text, [&](std::string_view line, int64_t line_no) {
    if (all_blank(line)) return;
    out.push_back(Record{line_no, std::string(line), {}, {}});
  });
  return out;
}

// The shape `auto` means for the train file: lm for plain text; else by the first record's
// fields (jsonl keys, csv columns).
Shape resolve_shape(const TextFilesOptions& o, const std::string& format, const std::string& text,
                    const std::string& path) {
  if (o.shape != "auto") return parse_shape(o.shape);
  if (format == "txt") return Shape::lm;
  std::vector<std::string> keys;
  if (format == "jsonl") {
    bool found = false;
    for_each_line(text, [&](std::string_view line, int64_t line_no) {
      if (found || all_blank(line)) return;
      found = true;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line.begin(), line.end());
      } catch (const nlohmann::json::parse_error& e) {
        throw UserError(where(path, line_no) + ": not valid JSON: " + e.what());
      }
      if (j.is_object())
        for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
    });
  } else {
    auto recs = csv_records(text.substr(0, text.find('\n')), format == "tsv" ? '\t' : ',');
    if (!recs.empty()) keys = recs[0].second;
  }
  auto has = [&](const std::string& k) {
    return !k.empty() && std::find(keys.begin(), keys.end(), k) != keys.end();
  };
  if (has(o.query_field) && !has(o.text_field)) return Shape::seq2seq;
  if (has(o.pair_field)) return Shape::pair;
  if (!has(o.label_field) && has(o.text_field)) return Shape::lm;
  return Shape::classify;
}

// ---- labels ----

bool is_integer(const std::string& s) {
  size_t i = s.size() > 1 && s[0] == '-' ? 1 : 0;
  if (i >= s.size() || s.size() > 18) return false;
  for (; i < s.size(); ++i)
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
  return true;
}

// Sorted: numerically when every label is an integer, else as byte strings.
void sort_labels(std::vector<std::string>& labels) {
  if (std::all_of(labels.begin(), labels.end(), is_integer))
    std::sort(labels.begin(), labels.end(), [](const std::string& a, const std::string& b) {
      return std::stoll(a) < std::stoll(b);
    });
  else
    std::sort(labels.begin(), labels.end());
}

// ---- tokenizing ----

std::vector<text::Encoding> encode_all(const text::Tokenizer& tok,
                                       const std::vector<Record>& recs, bool pairs,
                                       bool targets, const text::EncodeOptions& eo, int threads) {
  const size_t n = recs.size();
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (!pairs) {
    std::vector<std::string> texts;
    texts.reserve(n);
    for (const auto& r : recs) texts.push_back(targets ? r.pair : r.text);
    return tok.encode_batch(texts, eo, threads);
  }
  std::vector<text::Encoding> out(n);
  const size_t workers = std::min<size_t>(static_cast<size_t>(threads), std::max<size_t>(n, 1));
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(workers);
  for (size_t w = 0; w < workers; ++w)
    pool.emplace_back([&, w] {
      try {
        for (size_t i = w; i < n; i += workers)
          out[i] = tok.encode(recs[i].text, eo, std::string_view(recs[i].pair));
      } catch (...) {
        errors[w] = std::current_exception();
      }
    });
  for (auto& t : pool) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  return out;
}

// Cache file assembly.
class Writer {
 public:
  template <class T>
  void section(const std::string& name, const std::vector<T>& v) {
    sections_.emplace_back(name, std::string(reinterpret_cast<const char*>(v.data()),
                                             v.size() * sizeof(T)));
  }
  std::string finish(nlohmann::json header) {
    // The header's room: its text with every number at its widest (files below 1 TB).
    nlohmann::json wide = nlohmann::json::object();
    for (const auto& sec : sections_) wide[sec.first] = {999999999999ull, 999999999999ull};
    header["sections"] = wide;
    header["file_size"] = 999999999999ull;
    const size_t header_len = (header.dump().size() + 8) / 8 * 8;
    nlohmann::json secs = nlohmann::json::object();
    size_t off = 16 + header_len;
    for (const auto& [name, bytes] : sections_) {
      secs[name] = {off, bytes.size()};
      off += (bytes.size() + 7) / 8 * 8;
    }
    const size_t size = off + 8;
    header["sections"] = secs;
    header["file_size"] = size;
    std::string h = header.dump();
    SCULPT_ASSERT(h.size() <= header_len, "token cache header grew");
    h.resize(header_len, ' ');
    std::string out;
    out.reserve(size);
    out.append(kMagic, 8);
    const uint32_t ver = kVersion, hl = static_cast<uint32_t>(header_len);
    out.append(reinterpret_cast<const char*>(&ver), 4);
    out.append(reinterpret_cast<const char*>(&hl), 4);
    out += h;
    for (const auto& sec : sections_) {
      out += sec.second;
      out.append((8 - sec.second.size() % 8) % 8, '\0');
    }
    out.append(kTrailer, 8);
    SCULPT_ASSERT(out.size() == size, "token cache size");
    return out;
  }

 private:
  std::vector<std::pair<std::string, std::string>> sections_;
};

// What one tokenized file holds, read from cache bytes (mapped or in memory).
struct TokenView {
  nlohmann::json header;
  Shape shape = Shape::classify;
  int64_t rows = 0;
  const int64_t* lines = nullptr;
  const int32_t* label_ids = nullptr;
  const int64_t* offsets = nullptr;
  const int32_t* ids = nullptr;
  int64_t n_ids = 0;
  const int64_t* target_offsets = nullptr;
  const int32_t* target_ids = nullptr;
  int64_t n_target_ids = 0;
  std::vector<std::string> labels;
  int64_t longest = 0, longest_target = 0;
};

// A read-only mapping of a whole file.
class Mapping {
 public:
  explicit Mapping(const std::string& path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) return;
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return;
    size_ = static_cast<size_t>(st.st_size);
    if (size_ == 0) return;
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
    if (p != MAP_FAILED) data_ = static_cast<const char*>(p);
  }
  ~Mapping() {
    if (data_) ::munmap(const_cast<char*>(data_), size_);
    if (fd_ >= 0) ::close(fd_);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  bool ok() const { return data_ != nullptr; }
  const char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  int fd_ = -1;
  const char* data_ = nullptr;
  size_t size_ = 0;
};

// What a cache must say to be used.
struct Expect {
  std::string data_hash, tokenizer, options;
  int64_t vocab_size = 0;
};

// The view of cache bytes, or "" and the reason it cannot be used.
std::string parse_cache(const char* p, size_t n, const Expect& want, TokenView& v) {
  if (n < 24) return "it is truncated (" + std::to_string(n) + " bytes)";
  if (std::memcmp(p, kMagic, 8) != 0) return "it is not a Sculpt token cache";
  uint32_t ver, hl;
  std::memcpy(&ver, p + 8, 4);
  std::memcpy(&hl, p + 12, 4);
  if (ver != kVersion)
    return "it has format version " + std::to_string(ver) + ", not " + std::to_string(kVersion);
  if (16 + size_t(hl) > n) return "it is truncated (" + std::to_string(n) + " bytes)";
  try {
    v.header = nlohmann::json::parse(p + 16, p + 16 + hl);
  } catch (const nlohmann::json::exception&) {
    return "its header is not valid JSON";
  }
  const auto& h = v.header;
  try {
    const auto size = h.at("file_size").get<size_t>();
    if (size != n)
      return "it is truncated or damaged (" + std::to_string(n) + " bytes, its header says " +
             std::to_string(size) + ")";
    if (std::memcmp(p + n - 8, kTrailer, 8) != 0) return "its last bytes are damaged";
    if (h.at("tokenizer").get<std::string>() != want.tokenizer)
      return "it was written by another tokenizer (fingerprint " +
             h.at("tokenizer").get<std::string>() + ", this one's " + want.tokenizer + ")";
    if (h.at("data_hash").get<std::string>() != want.data_hash)
      return "it was written for other contents of the data file";
    if (h.at("options").get<std::string>() != want.options)
      return "it was written with other options";
    v.shape = parse_shape(h.at("shape").get<std::string>());
    v.rows = h.at("rows").get<int64_t>();
    v.labels = h.at("labels").get<std::vector<std::string>>();
    v.longest = h.at("longest").get<int64_t>();
    v.longest_target = h.at("longest_target").get<int64_t>();
    const auto& secs = h.at("sections");
    auto sec = [&](const char* name, size_t elem, int64_t count, auto*& out) -> bool {
      if (!secs.contains(name)) return count == 0;
      const auto off = secs[name][0].get<size_t>(), bytes = secs[name][1].get<size_t>();
      if (off % 8 != 0 || off + bytes > n - 8 || (count >= 0 && bytes != size_t(count) * elem))
        return false;
      out = reinterpret_cast<std::remove_reference_t<decltype(out)>>(p + off);
      return true;
    };
    const bool lm = v.shape == Shape::lm;
    bool ok = sec("lines", 8, lm ? 0 : v.rows, v.lines);
    if (v.shape == Shape::classify || v.shape == Shape::pair)
      ok = ok && sec("label_ids", 4, v.rows, v.label_ids);
    if (!lm) ok = ok && sec("offsets", 8, v.rows + 1, v.offsets);
    v.n_ids = h.at("ids").get<int64_t>();
    ok = ok && sec("ids", 4, v.n_ids, v.ids);
    if (v.shape == Shape::seq2seq) {
      v.n_target_ids = h.at("target_ids").get<int64_t>();
      ok = ok && sec("target_offsets", 8, v.rows + 1, v.target_offsets) &&
           sec("target_ids", 4, v.n_target_ids, v.target_ids);
    }
    if (!ok) return "its sections do not fit the file";
  } catch (const nlohmann::json::exception&) {
    return "its header lacks a field";
  }
  // The ids and offsets themselves: in range and in order (a damaged file is never used).
  auto ids_ok = [&](const int32_t* ids, int64_t count) {
    for (int64_t i = 0; i < count; ++i)
      if (ids[i] < 0 || ids[i] >= want.vocab_size) return false;
    return true;
  };
  auto offsets_ok = [&](const int64_t* off, int64_t count) {
    if (!off) return true;
    if (off[0] != 0 || off[v.rows] != count) return false;
    for (int64_t r = 0; r < v.rows; ++r)
      if (off[r + 1] < off[r]) return false;
    return true;
  };
  if (!ids_ok(v.ids, v.n_ids) || !ids_ok(v.target_ids, v.n_target_ids) ||
      !offsets_ok(v.offsets, v.n_ids) || !offsets_ok(v.target_offsets, v.n_target_ids))
    return "its ids are damaged";
  if (v.label_ids)
    for (int64_t r = 0; r < v.rows; ++r)
      if (v.label_ids[r] < 0 || v.label_ids[r] >= static_cast<int64_t>(v.labels.size()))
        return "its labels are damaged";
  return "";
}

// The options that change the ids a file tokenizes to (the cache key; padding, labels,
// block_size and pad_id are applied when the rows are built).
std::string ids_options(const TextFilesOptions& o, const std::string& format, Shape shape) {
  nlohmann::json j = {{"format", format},
                      {"shape", shape_name(shape)},
                      {"fields", fields_of(o, shape).text + "|" + fields_of(o, shape).pair + "|" +
                                     fields_of(o, shape).label},
                      {"max_length", shape == Shape::lm || !o.truncation ? 0 : o.max_length},
                      {"max_target_length", shape == Shape::seq2seq && o.truncation ? o.max_target_length : 0},
                      {"add_special_tokens", o.add_special_tokens},
                      {"invalid_utf8", o.invalid_utf8},
                      {"version", kVersion}};
  return j.dump();
}

// Tokenizes `path` into cache bytes.
std::string tokenize_file(const TextFilesOptions& o, const std::string& path,
                          const std::string& raw, const std::string& format, Shape shape,
                          const text::Tokenizer& tok, const Expect& want, int threads) {
  std::string text = is_gzip(raw) ? read_maybe_gz(path) : raw;
  text = checked_utf8(std::move(text), path, o.invalid_utf8 == "replace");
  const Fields f = fields_of(o, shape);
  std::vector<Record> recs;
  if (format == "jsonl")
    recs = read_jsonl(text, path, shape, f);
  else if (format == "csv" || format == "tsv")
    recs = read_csv(text, path, format == "tsv" ? '\t' : ',', f);
  else
    recs = read_txt(text);
  text.clear();
  text.shrink_to_fit();
  SCULPT_CHECK(!recs.empty(), path, ": no records");

  text::EncodeOptions eo;
  eo.add_special_tokens = o.add_special_tokens;
  eo.max_length = shape != Shape::lm && o.truncation ? o.max_length : 0;
  nlohmann::json header = {{"data_hash", want.data_hash},  {"tokenizer", want.tokenizer},
                           {"options", want.options},      {"shape", shape_name(shape)},
                           {"file", fs::path(path).filename().string()}};
  Writer w;
  std::vector<int32_t> ids;
  int64_t longest = 0, longest_target = 0;
  auto check_length = [&](const text::Encoding& e, const Record& r, int64_t max, const char* key) {
    SCULPT_CHECK(o.truncation || max == 0 || static_cast<int64_t>(e.ids.size()) <= max,
                 where(path, r.line), ": ", e.ids.size(), " ids, more than data.", key, " = ",
                 max, " (data.truncation: false)");
  };
  if (shape == Shape::lm) {
    const auto enc = encode_all(tok, recs, false, false, eo, threads);
    const auto eos = tok.eos_id();
    if (!eos) log::warn(path, ": the tokenizer has no eos token; lm records are joined without one");
    for (const auto& e : enc) {
      ids.insert(ids.end(), e.ids.begin(), e.ids.end());
      if (eos && (e.ids.empty() || e.ids.back() != *eos)) ids.push_back(*eos);
    }
    header["rows"] = static_cast<int64_t>(recs.size());
    header["labels"] = nlohmann::json::array();
  } else {
    std::vector<int64_t> lines, offsets{0};
    lines.reserve(recs.size());
    for (const auto& r : recs) lines.push_back(r.line);
    const auto enc = encode_all(tok, recs, shape == Shape::pair, false, eo, threads);
    for (size_t i = 0; i < enc.size(); ++i) {
      check_length(enc[i], recs[i], o.max_length, "max_length");
      ids.insert(ids.end(), enc[i].ids.begin(), enc[i].ids.end());
      offsets.push_back(static_cast<int64_t>(ids.size()));
      longest = std::max<int64_t>(longest, static_cast<int64_t>(enc[i].ids.size()));
    }
    w.section("lines", lines);
    w.section("offsets", offsets);
    header["rows"] = static_cast<int64_t>(recs.size());
    if (shape == Shape::seq2seq) {
      text::EncodeOptions te = eo;
      te.max_length = o.truncation ? o.max_target_length : 0;
      const auto tenc = encode_all(tok, recs, false, true, te, threads);
      const auto eos = tok.eos_id();
      std::vector<int32_t> tids;
      std::vector<int64_t> toffsets{0};
      bool zero = false;
      for (size_t i = 0; i < tenc.size(); ++i) {
        std::vector<int32_t> t = tenc[i].ids;
        if (eos && (t.empty() || t.back() != *eos)) {
          if (o.max_target_length > 0 && static_cast<int64_t>(t.size()) >= o.max_target_length)
            t.back() = *eos;
          else
            t.push_back(*eos);
        }
        text::Encoding e;
        e.ids = t;
        check_length(e, recs[i], o.max_target_length, "max_target_length");
        zero = zero || std::find(t.begin(), t.end(), 0) != t.end();
        tids.insert(tids.end(), t.begin(), t.end());
        toffsets.push_back(static_cast<int64_t>(tids.size()));
        longest_target = std::max<int64_t>(longest_target, static_cast<int64_t>(t.size()));
      }
      if (zero && tok.pad_id().value_or(0) != 0)
        log::warn(path, ": some targets hold id 0, which the seq2seq losses read as padding "
                        "(the tokenizer's pad id is ", *tok.pad_id(), ")");
      w.section("target_offsets", toffsets);
      w.section("target_ids", tids);
      header["target_ids"] = static_cast<int64_t>(tids.size());
      header["labels"] = nlohmann::json::array();
    } else {
      // The file's labels, sorted, and each row's index among them.
      std::vector<std::string> names;
      {
        std::set<std::string> seen;
        for (const auto& r : recs) seen.insert(r.label);
        names.assign(seen.begin(), seen.end());
      }
      sort_labels(names);
      std::unordered_map<std::string, int32_t> index;
      for (size_t k = 0; k < names.size(); ++k) index[names[k]] = static_cast<int32_t>(k);
      std::vector<int32_t> label_ids;
      label_ids.reserve(recs.size());
      for (const auto& r : recs) label_ids.push_back(index.at(r.label));
      w.section("label_ids", label_ids);
      header["labels"] = names;
    }
  }
  for (int32_t id : ids)
    SCULPT_ASSERT(id >= 0 && id < want.vocab_size, "tokenizer id ", id, " outside [0, ",
                  want.vocab_size, ")");
  w.section("ids", ids);
  header["ids"] = static_cast<int64_t>(ids.size());
  header["longest"] = longest;
  header["longest_target"] = longest_target;
  return w.finish(header);
}

// Holds the bytes a view points into.
struct LoadedFile {
  std::unique_ptr<Mapping> map;
  std::string bytes;
  TokenView view;
  std::string path;  // the data file
};

bool dir_writable(const fs::path& dir) {
  return ::access((dir.empty() ? fs::path(".") : dir).c_str(), W_OK) == 0;
}

// Holds an exclusive lock on the data file while the cache is checked and built, so ranks of a
// data-parallel run on one machine tokenize once.
class FileLock {
 public:
  explicit FileLock(const std::string& path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ >= 0)
      while (::flock(fd_, LOCK_EX) != 0 && errno == EINTR) {
      }
  }
  ~FileLock() {
    if (fd_ >= 0) ::close(fd_);  // releases the lock
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

std::string cache_name(const std::string& path, const std::string& key) {
  return fs::path(path).filename().string() + ".sculpt-tok-" + key + ".bin";
}

std::string key_of(const Expect& want) {
  const std::string all = want.data_hash + "\n" + want.tokenizer + "\n" + want.options;
  return hex64(hash_bytes(all.data(), all.size(), 0x5c417d));
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// `path` tokenized: from its cache when one fits, else tokenized (and cached).
void load_file(LoadedFile& out, const TextFilesOptions& o, const std::string& path,
               const std::string& format, Shape shape, const text::Tokenizer& tok,
               const TextFilesContext& ctx) {
  const auto t0 = std::chrono::steady_clock::now();
  out.path = path;
  std::optional<FileLock> lock;
  if (o.cache) lock.emplace(path);
  const std::string raw = read_raw(path);
  Expect want{hex64(hash_bytes(raw.data(), raw.size())), tok.fingerprint(),
              ids_options(o, format, shape), tok.vocab_size()};
  const std::string key = key_of(want);
  const fs::path primary = fs::path(path).parent_path() / cache_name(path, key);
  const fs::path fallback =
      ctx.run_dir.empty() ? fs::path() : fs::path(ctx.run_dir) / "tokenized" / cache_name(path, key);
  if (o.cache) {
    for (const fs::path& cand : {primary, fallback}) {
      std::error_code ec;
      if (cand.empty() || !fs::exists(cand, ec)) continue;
      auto map = std::make_unique<Mapping>(cand.string());
      TokenView v;
      const std::string why = map->ok() ? parse_cache(map->data(), map->size(), want, v)
                                        : std::string("it cannot be read");
      if (why.empty()) {
        out.map = std::move(map);
        out.view = std::move(v);
        log::info("data: ", path, ": ", out.view.rows, " records, ",
                  out.view.n_ids + out.view.n_target_ids, " ids from the token cache ",
                  cand.string(), " in ", seconds_since(t0), " s");
        return;
      }
      log::warn("data: token cache ", cand.string(), " is not used: ", why, "; rebuilding it");
    }
  }
  out.bytes = tokenize_file(o, path, raw, format, shape, tok, want, ctx.threads);
  const double took = seconds_since(t0);
  std::string cached = "not cached (data.cache: false)";
  if (o.cache) {
    // Beside the data; in the run directory when the data's folder is not writable (or the
    // write fails there).
    std::vector<fs::path> targets;
    if (dir_writable(primary.parent_path())) targets.push_back(primary);
    if (!fallback.empty()) targets.push_back(fallback);
    std::string failed = dir_writable(primary.parent_path())
                             ? ""
                             : primary.parent_path().string() + " is not writable";
    for (const fs::path& target : targets) {
      if (target == fallback && !failed.empty())
        log::info("data: ", failed, "; the token cache goes to the run directory: ",
                  fallback.string());
      try {
        std::error_code ec;
        fs::create_directories(target.parent_path(), ec);
        io::write_file_atomic(target.string(), out.bytes);
        cached = "token cache " + target.string();
        failed.clear();
        break;
      } catch (const std::exception& e) {
        failed = std::string("the token cache could not be written: ") + e.what();
        log::warn("data: ", path, ": ", failed);
      }
    }
    if (!failed.empty()) cached = "not cached: " + failed;
  }
  const std::string why = parse_cache(out.bytes.data(), out.bytes.size(), want, out.view);
  SCULPT_ASSERT(why.empty(), "fresh token cache of ", path, ": ", why);
  log::info("data: tokenized ", path, ": ", out.view.rows, " records, ",
            out.view.n_ids + out.view.n_target_ids, " ids in ", took, " s; ", cached);
}

// ---- rows ----

int64_t row_len(const int64_t* off, int64_t r) { return off[r + 1] - off[r]; }

std::unique_ptr<Dataset> build_rows(const TextFilesOptions& o, const LoadedFile& f,
                                    const LoadedFile& train, const text::Tokenizer& tok,
                                    const TextFilesContext& ctx, bool is_train) {
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
    auto x = at::full({n, s + t}, o.pad_id, at::kLong);
    auto y = at::full({n, t}, token::pad, at::kLong);
    int64_t* px = x.data_ptr<int64_t>();
    int64_t* py = y.data_ptr<int64_t>();
    const int64_t start = tok.pad_id() ? *tok.pad_id() : tok.bos_id() ? *tok.bos_id() : 0;
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
  auto x = at::full({n, len}, o.pad_id, at::kLong);
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
    fill(px + r * len, v.ids + v.offsets[r], row_len(v.offsets, r), len);
  }
  if (cut > 0) log::warn("data: ", f.path, ": ", cut, " texts cut to ", len, " ids");
  spec.input_shape = {len};
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
  LoadedFile train;
  load_file(train, o, o.file, format, shape, tok, ctx);
  if (part == DataPart::train) return build_rows(o, train, train, tok, ctx, true);
  LoadedFile test;
  load_file(test, o, o.test_file, format_of(o, o.test_file), shape, tok, ctx);
  return build_rows(o, test, train, tok, ctx, false);
}

std::string text_cache_path(const TextFilesOptions& o, const std::string& file,
                            const text::Tokenizer& tok) {
  const std::string format = format_of(o, file);
  Shape shape = parse_shape(o.shape);
  if (o.shape == "auto") {
    const std::string raw = read_raw(o.file);
    shape = resolve_shape(o, format_of(o, o.file), is_gzip(raw) ? read_maybe_gz(o.file) : raw,
                          o.file);
  }
  const std::string raw = read_raw(file);
  Expect want{hex64(hash_bytes(raw.data(), raw.size())), tok.fingerprint(),
              ids_options(o, format, shape), tok.vocab_size()};
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
        return load_text_files(o, part, *tok, TextFilesContext{c.run_dir, 0});
      },
      [] { return std::make_shared<TextFilesOptions>(); });
}

}  // namespace sculpt::data
