// data.name: text's records (text_records.h): jsonl, csv/tsv and plain-text files.
#include "core/data/text_records.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/data/file_input.h"
#include "core/error.h"
#include "core/text/tokenizer.h"

namespace sculpt::data::textdata {

namespace fs = std::filesystem;

const char* shape_name(Shape s) {
  switch (s) {
    case Shape::classify:
      return "classify";
    case Shape::pair:
      return "pair";
    case Shape::seq2seq:
      return "seq2seq";
    case Shape::lm:
      return "lm";
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

namespace {

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

}  // namespace

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
                    std::to_string(i) + " (byte " + std::to_string(col) + " of the line, " + byte +
                    "); data.invalid_utf8: replace reads it as U+FFFD");
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

Fields fields_of(const TextFilesOptions& o, Shape s) {
  switch (s) {
    case Shape::classify:
      return {o.text_field, "", o.label_field};
    case Shape::pair:
      return {o.text_field, o.pair_field, o.label_field};
    case Shape::seq2seq:
      return {o.query_field, o.target_field, ""};
    case Shape::lm:
      return {o.text_field, "", ""};
  }
  return {};
}

std::string where(const std::string& path, int64_t line) {
  return path + ":" + std::to_string(line);
}

namespace {

// A label as text: a JSON string as it is, an integer in decimal.
std::string label_text(const nlohmann::json& v, const std::string& path, int64_t line,
                       const std::string& key) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return v.dump();
  throw UserError(where(path, line) + ": field '" + key + "' must be a string or an integer, got " +
                  v.dump());
}

bool all_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return std::isspace(uint8_t(c)); });
}

// One jsonl line as JSON; a UserError naming the file and line for any JSON error (syntax, a
// number out of range such as 1e999).
nlohmann::json parse_line(std::string_view line, const std::string& path, int64_t line_no) {
  try {
    return nlohmann::json::parse(line.begin(), line.end());
  } catch (const nlohmann::json::exception& e) {
    throw UserError(where(path, line_no) + ": not valid JSON: " + e.what());
  }
}

}  // namespace

std::vector<Record> read_jsonl(const std::string& text, const std::string& path, const Fields& f) {
  std::vector<Record> out;
  for_each_line(text, [&](std::string_view line, int64_t line_no) {
    if (all_blank(line)) return;
    const nlohmann::json j = parse_line(line, path, line_no);
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
    // Any other JSON error on the record names its line too.
    try {
      r.text = get(f.text, false);
      if (!f.pair.empty()) r.pair = get(f.pair, false);
      if (!f.label.empty()) r.label = get(f.label, true);
    } catch (const nlohmann::json::exception& e) {
      throw UserError(where(path, line_no) + ": " + e.what());
    }
    out.push_back(std::move(r));
  });
  return out;
}

namespace {

// CSV records, each with the line it starts on.
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

}  // namespace

std::vector<Record> read_csv(const std::string& text, const std::string& path, char sep,
                             const Fields& f) {
  auto recs = csv_records(text, sep);
  SCULPT_CHECK(!recs.empty(), path, ": no header line (the first line names the columns)");
  const auto& header = recs[0].second;
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
    const int64_t line = recs[k].first;  // (no structured binding: clang 14's lambdas)
    auto& rec = recs[k].second;
    auto get = [&](size_t col, const std::string& key) {
      SCULPT_CHECK(col < rec.size(), where(path, line), ": missing field '", key, "' (", rec.size(),
                   " fields, the header has ", header.size(), ")");
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
      const nlohmann::json j = parse_line(line, path, line_no);
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

// ---- tokenizing ----

// Pairs: chunks of records handed out to the threads as they finish (long and short lines
// balance), the first failing record remembered.
std::vector<text::Encoding> encode_all(const text::Tokenizer& tok, const std::string& path,
                                       const std::vector<Record>& recs, bool pairs, bool targets,
                                       const text::EncodeOptions& eo, int threads) {
  const size_t n = recs.size();
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (!pairs) {  // the tokenizer's own batching; on an error, the record it was found in
    std::vector<std::string> texts;
    texts.reserve(n);
    for (const auto& r : recs) texts.push_back(targets ? r.pair : r.text);
    try {
      return tok.encode_batch(texts, eo, threads);
    } catch (const UserError&) {
      for (size_t i = 0; i < n; ++i) {
        try {
          (void)tok.encode(texts[i], eo);
        } catch (const UserError& e) {
          throw UserError(where(path, recs[i].line) + ": " + e.what());
        }
      }
      throw;
    }
  }
  std::vector<text::Encoding> out(n);
  constexpr size_t kChunk = 64;
  const size_t chunks = std::max<size_t>(1, (n + kChunk - 1) / kChunk);
  const size_t workers = std::min<size_t>(static_cast<size_t>(threads), chunks);
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  std::exception_ptr error;
  size_t error_at = n;
  auto work = [&] {
    for (;;) {
      const size_t begin = next.fetch_add(kChunk);
      if (begin >= n || failed) return;
      for (size_t i = begin; i < std::min(n, begin + kChunk); ++i) {
        try {
          out[i] = tok.encode(recs[i].text, eo, std::string_view(recs[i].pair));
        } catch (...) {
          std::lock_guard<std::mutex> g(mu);
          if (i < error_at) error_at = i, error = std::current_exception();
          failed = true;
          return;
        }
      }
    }
  };
  std::vector<std::thread> pool;
  for (size_t w = 1; w < workers; ++w) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (error) {
    try {
      std::rethrow_exception(error);
    } catch (const UserError& e) {
      throw UserError(where(path, recs[error_at].line) + ": " + e.what());
    }
  }
  return out;
}

// ---- labels ----

namespace {
bool is_integer(const std::string& s) {
  size_t i = s.size() > 1 && s[0] == '-' ? 1 : 0;
  if (i >= s.size() || s.size() > 18) return false;
  for (; i < s.size(); ++i)
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
  return true;
}

}  // namespace

void sort_labels(std::vector<std::string>& labels) {
  if (std::all_of(labels.begin(), labels.end(), is_integer))
    std::sort(labels.begin(), labels.end(), [](const std::string& a, const std::string& b) {
      return std::stoll(a) < std::stoll(b);
    });
  else
    std::sort(labels.begin(), labels.end());
}

}  // namespace sculpt::data::textdata
