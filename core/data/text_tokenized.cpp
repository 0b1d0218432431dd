// Tokenizing the files of data.name: text (text_tokenized.h).
#include "core/data/text_tokenized.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <exception>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <memory>
#include <optional>
#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/data/file_input.h"
#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/logging/logging.h"
#include "core/text/tokenizer.h"

namespace sculpt::data::textdata {

namespace fs = std::filesystem;

std::string ids_options(const TextFilesOptions& o, const std::string& format, Shape shape,
                        int64_t target_eos) {
  nlohmann::json j = {{"format", format},
                      {"shape", shape_name(shape)},
                      {"fields", fields_of(o, shape).text + "|" + fields_of(o, shape).pair + "|" +
                                     fields_of(o, shape).label},
                      {"max_length", shape == Shape::lm || !o.truncation ? 0 : o.max_length},
                      {"max_target_length", shape == Shape::seq2seq && o.truncation ? o.max_target_length : 0},
                      {"add_special_tokens", o.add_special_tokens},
                      {"invalid_utf8", o.invalid_utf8},
                      {"version", kVersion}};
  if (shape == Shape::pair) j["type_ids"] = true;
  if (shape == Shape::seq2seq) j["target_eos"] = target_eos;
  return j.dump();
}

namespace {

// Tokenizes `path` into cache bytes.
std::string tokenize_file(const TextFilesOptions& o, const std::string& path,
                          const std::string& raw, const std::string& format, Shape shape,
                          const text::Tokenizer& tok, const Expect& want, int64_t target_eos,
                          int threads) {
  std::string text = is_gzip(raw) ? read_maybe_gz(path) : raw;
  text = checked_utf8(std::move(text), path, o.invalid_utf8 == "replace");
  const Fields f = fields_of(o, shape);
  std::vector<Record> recs;
  if (format == "jsonl")
    recs = read_jsonl(text, path, f);
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
    const auto enc = encode_all(tok, path, recs, false, false, eo, threads);
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
    const auto enc = encode_all(tok, path, recs, shape == Shape::pair, false, eo, threads);
    std::vector<uint8_t> types;  // pair: the template's type id of every id
    for (size_t i = 0; i < enc.size(); ++i) {
      check_length(enc[i], recs[i], o.max_length, "max_length");
      ids.insert(ids.end(), enc[i].ids.begin(), enc[i].ids.end());
      if (shape == Shape::pair)
        for (size_t k = 0; k < enc[i].ids.size(); ++k) {
          const int32_t t = k < enc[i].type_ids.size() ? enc[i].type_ids[k] : 0;
          SCULPT_ASSERT(t >= 0 && t < 256, "token type id ", t, " outside [0, 256)");
          types.push_back(static_cast<uint8_t>(t));
        }
      offsets.push_back(static_cast<int64_t>(ids.size()));
      longest = std::max<int64_t>(longest, static_cast<int64_t>(enc[i].ids.size()));
    }
    w.section("lines", lines);
    w.section("offsets", offsets);
    if (shape == Shape::pair) w.section("type_ids", types);
    header["rows"] = static_cast<int64_t>(recs.size());
    if (shape == Shape::seq2seq) {
      text::EncodeOptions te = eo;
      te.max_length = o.truncation ? o.max_target_length : 0;
      const auto tenc = encode_all(tok, path, recs, false, true, te, threads);
      const std::optional<int32_t> eos =
          target_eos >= 0 ? std::optional<int32_t>(static_cast<int32_t>(target_eos)) : std::nullopt;
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

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

std::string cache_name(const std::string& path, const std::string& key) {
  return fs::path(path).filename().string() + ".sculpt-tok-" + key + ".bin";
}

std::string key_of(const Expect& want) {
  const std::string all = want.data_hash + "\n" + want.tokenizer + "\n" + want.options;
  return hex64(hash_bytes(all.data(), all.size(), 0x5c417d));
}

void load_file(LoadedFile& out, const TextFilesOptions& o, const std::string& path,
               const std::string& format, Shape shape, const text::Tokenizer& tok,
               int64_t target_eos, const TextFilesContext& ctx) {
  const auto t0 = std::chrono::steady_clock::now();
  out.path = path;
  std::optional<FileLock> lock;
  if (o.cache) lock.emplace(path);
  const std::string raw = read_raw(path);
  Expect want{hex64(hash_bytes(raw.data(), raw.size())), tok.fingerprint(),
              ids_options(o, format, shape, target_eos), tok.vocab_size()};
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
  out.bytes = tokenize_file(o, path, raw, format, shape, tok, want, target_eos, ctx.threads);
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

}  // namespace sculpt::data::textdata
