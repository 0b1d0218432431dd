// What every tokenizer shares: errors with file and JSON path, batch encoding on threads,
// truncation and padding, fingerprints, and load_tokenizer's choice of format.
#include "core/text/tokenizer.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/config/errors.h"
#include "core/text/components.h"
#include "core/text/loaders.h"

namespace sculpt::text {

namespace detail {

void fail(const Where& where, const std::string& message) {
  config::Diagnostic d;
  d.source.file = where.file;
  d.path = where.path;
  d.message = message;
  throw config::ConfigError({d});
}

void fail_unsupported(const Where& where, const std::string& what, const std::string& value,
                      const std::vector<std::string>& supported) {
  std::string list;
  for (const auto& s : supported) list += (list.empty() ? "" : ", ") + s;
  fail(where, "unsupported " + what + " '" + value + "' (supported: " + list + ")");
}

const nlohmann::json& member(const nlohmann::json& j, const char* key, const Where& where) {
  if (!j.is_object() || !j.contains(key)) fail(where.at(key), "missing");
  return j[key];
}

std::string get_string(const nlohmann::json& j, const char* key, const Where& where,
                       std::optional<std::string> fallback) {
  if (!j.is_object() || !j.contains(key) || (j[key].is_null() && fallback)) {
    if (fallback) return *fallback;
    fail(where.at(key), "missing");
  }
  if (!j[key].is_string()) fail(where.at(key), "expected a string, got " + j[key].dump());
  return j[key].get<std::string>();
}

bool get_bool(const nlohmann::json& j, const char* key, const Where& where, bool fallback) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_boolean()) fail(where.at(key), "expected true or false, got " + j[key].dump());
  return j[key].get<bool>();
}

void truncate_pair(Encoding& a, Encoding* b, size_t max_total) {
  const size_t n1 = a.ids.size(), n2 = b ? b->ids.size() : 0;
  if (n1 + n2 <= max_total) return;
  if (!b) {
    a.ids.resize(max_total);
    return;
  }
  // Longest first: the shorter keeps its length when it fits in half, else both get half
  // (the longer one the odd id).
  const size_t half = max_total / 2;
  size_t keep1, keep2;
  if (n1 <= n2) {
    keep1 = std::min(n1, half);
    keep2 = max_total - keep1;
  } else {
    keep2 = std::min(n2, half);
    keep1 = max_total - keep2;
  }
  a.ids.resize(std::min(n1, keep1));
  b->ids.resize(std::min(n2, keep2));
}

void truncate_and_pad(Encoding& e, const EncodeOptions& options, int32_t pad_id) {
  if (options.max_length > 0 && e.ids.size() > static_cast<size_t>(options.max_length)) {
    e.ids.resize(static_cast<size_t>(options.max_length));
    e.type_ids.resize(std::min(e.type_ids.size(), e.ids.size()));
    e.attention_mask.resize(std::min(e.attention_mask.size(), e.ids.size()));
  }
  if (e.type_ids.size() != e.ids.size()) e.type_ids.resize(e.ids.size(), 0);
  if (e.attention_mask.size() != e.ids.size()) e.attention_mask.resize(e.ids.size(), 1);
  if (!options.pad_to_max_length || options.max_length <= 0) return;
  const auto n = static_cast<size_t>(options.max_length);
  if (e.ids.size() >= n) return;
  e.ids.resize(n, pad_id);
  e.type_ids.resize(n, 0);
  e.attention_mask.resize(n, 0);
}

std::string read_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    fail({path, ""}, fs::exists(path, ec) ? "not a regular file" : "no such file");
  const auto size = fs::file_size(path, ec);
  if (ec) fail({path, ""}, "cannot read the file");
  if (size > kMaxFileBytes)
    fail({path, ""}, "the file holds " + std::to_string(size) +
                         " bytes, more than a tokenizer file may (" +
                         std::to_string(kMaxFileBytes >> 20) + " MiB)");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail({path, ""}, "cannot read the file");
  std::string out(static_cast<size_t>(size), '\0');
  in.read(out.data(), static_cast<std::streamsize>(out.size()));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

nlohmann::json parse_json(const std::string& text, const Where& where) {
  // Nesting first (a flat scan): every reader here recurses over the values it reads, and
  // nlohmann::json's dump() over the values it prints.
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth)
        fail(where, "JSON nested deeper than " + std::to_string(kMaxJsonDepth) +
                        " levels (at byte offset " + std::to_string(i) + ")");
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(where, std::string("malformed JSON: ") + e.what());
  }
}

int32_t get_id(const nlohmann::json& v, int64_t bound, const Where& where,
               const std::string& bound_why) {
  if (!v.is_number_integer()) fail(where, "expected an integer id, got " + v.dump().substr(0, 80));
  const bool negative = v.is_number_integer() && !v.is_number_unsigned() && v.get<int64_t>() < 0;
  if (negative || v.get<uint64_t>() >= static_cast<uint64_t>(bound))
    fail(where,
         "id " + v.dump() + " is outside [0, " + std::to_string(bound) + ") (" + bound_why + ")");
  return static_cast<int32_t>(v.get<int64_t>());
}

std::string fingerprint_files(const std::vector<std::string>& paths) {
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&h](const std::string& bytes) {
    for (unsigned char c : bytes) {
      h ^= c;
      h *= 1099511628211ULL;
    }
  };
  for (const auto& p : paths) {
    mix(std::filesystem::path(p).filename().string());
    mix(read_file(p));
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace detail

std::vector<Encoding> Tokenizer::encode_batch(const std::vector<std::string>& texts,
                                              const EncodeOptions& options, int threads) const {
  std::vector<Encoding> out(texts.size());
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads = static_cast<int>(
      std::min<size_t>(static_cast<size_t>(threads), std::max<size_t>(1, texts.size() / 8)));
  if (threads <= 1) {
    for (size_t i = 0; i < texts.size(); ++i) out[i] = encode(texts[i], options);
    return out;
  }
  // Chunks handed out dynamically: long and short lines balance across threads.
  std::atomic<size_t> next{0};
  constexpr size_t kChunk = 64;
  std::exception_ptr error;
  std::atomic<bool> failed{false};
  auto work = [&] {
    try {
      for (;;) {
        const size_t begin = next.fetch_add(kChunk);
        if (begin >= texts.size() || failed) return;
        const size_t end = std::min(texts.size(), begin + kChunk);
        for (size_t i = begin; i < end; ++i) out[i] = encode(texts[i], options);
      }
    } catch (...) {
      if (!failed.exchange(true)) error = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  return out;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path p(path);
  std::error_code ec;
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / "tokenizer.json"))
      return detail::load_hf_tokenizer((p / "tokenizer.json").string(), path);
    for (const char* name : {"tokenizer.model", "spiece.model", "sentencepiece.bpe.model"})
      if (fs::exists(p / name)) return detail::load_sp_tokenizer((p / name).string(), path);
    detail::fail({path, ""},
                 "no tokenizer here: expected tokenizer.json, tokenizer.model or spiece.model");
  }
  if (!fs::exists(p, ec)) detail::fail({path, ""}, "no such file or directory");
  if (p.extension() == ".model") return detail::load_sp_tokenizer(path, "");
  return detail::load_hf_tokenizer(path, "");
}

}  // namespace sculpt::text
