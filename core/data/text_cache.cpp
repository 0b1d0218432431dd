// The token cache's writer and reader (text_cache.h).
#include "core/data/text_cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <type_traits>

#include "core/error.h"

namespace sculpt::data::textdata {

namespace {
constexpr char kMagic[9] = "SCULPTTK";
constexpr char kTrailer[9] = "SCULPTOK";
}  // namespace

namespace {
uint64_t mix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

}  // namespace

// Four independent lanes of 8 bytes, then the tail: about memory speed.
uint64_t hash_bytes(const char* p, size_t n, uint64_t seed) {
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

std::string Writer::finish(nlohmann::json header) {
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

Mapping::Mapping(const std::string& path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) return;
  struct stat st {};
  if (::fstat(fd_, &st) != 0) return;
  size_ = static_cast<size_t>(st.st_size);
  if (size_ == 0) return;
  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
  if (p != MAP_FAILED) data_ = static_cast<const char*>(p);
}

Mapping::~Mapping() {
  if (data_) ::munmap(const_cast<char*>(data_), size_);
  if (fd_ >= 0) ::close(fd_);
}

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
    // Counts: integers no larger than the file (each counted thing takes a byte or more).
    auto count_of = [&](const char* key, int64_t& out) {
      const auto& c = h.at(key);
      if (!c.is_number_integer() || c.get<int64_t>() < 0 || c.get<uint64_t>() > n) return false;
      out = c.get<int64_t>();
      return true;
    };
    if (!count_of("rows", v.rows) || !count_of("ids", v.n_ids) || !count_of("longest", v.longest) ||
        !count_of("longest_target", v.longest_target) ||
        (v.shape == Shape::seq2seq && !count_of("target_ids", v.n_target_ids)))
      return "its header's counts are damaged";
    v.labels = h.at("labels").get<std::vector<std::string>>();
    const auto& secs = h.at("sections");
    // A section of exactly `count` elements inside the file, before its trailer.
    auto sec = [&](const char* name, size_t elem, int64_t count, auto*& out) -> bool {
      if (!secs.contains(name)) return count == 0;
      const auto& s = secs.at(name);
      if (!s.is_array() || s.size() != 2 || !s.at(0).is_number_unsigned() ||
          !s.at(1).is_number_unsigned())
        return false;
      const auto off = s.at(0).get<uint64_t>(), bytes = s.at(1).get<uint64_t>();
      if (off % 8 != 0 || off > n - 8 || bytes > n - 8 - off ||
          bytes != static_cast<uint64_t>(count) * elem)
        return false;
      out = reinterpret_cast<std::remove_reference_t<decltype(out)>>(p + off);
      return true;
    };
    const bool lm = v.shape == Shape::lm;
    bool ok = sec("lines", 8, lm ? 0 : v.rows, v.lines);
    if (v.shape == Shape::classify || v.shape == Shape::pair)
      ok = ok && sec("label_ids", 4, v.rows, v.label_ids);
    if (!lm) ok = ok && sec("offsets", 8, v.rows + 1, v.offsets);
    ok = ok && sec("ids", 4, v.n_ids, v.ids);
    if (v.shape == Shape::pair) ok = ok && sec("type_ids", 1, v.n_ids, v.type_ids);
    if (v.shape == Shape::seq2seq)
      ok = ok && sec("target_offsets", 8, v.rows + 1, v.target_offsets) &&
           sec("target_ids", 4, v.n_target_ids, v.target_ids);
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
  // Offsets from 0 to `count`, in order, whose longest row is `longest` (what the rows are
  // padded to: a header may not claim more).
  auto offsets_ok = [&](const int64_t* off, int64_t count, int64_t longest) {
    if (!off) return longest == 0;
    if (off[0] != 0 || off[v.rows] != count) return false;
    int64_t most = 0;
    for (int64_t r = 0; r < v.rows; ++r) {
      if (off[r + 1] < off[r]) return false;
      most = std::max(most, off[r + 1] - off[r]);
    }
    return most == longest;
  };
  if (!ids_ok(v.ids, v.n_ids) || !ids_ok(v.target_ids, v.n_target_ids) ||
      !offsets_ok(v.offsets, v.n_ids, v.longest) ||
      !offsets_ok(v.target_offsets, v.n_target_ids, v.longest_target))
    return "its ids are damaged";
  if (v.label_ids)
    for (int64_t r = 0; r < v.rows; ++r)
      if (v.label_ids[r] < 0 || v.label_ids[r] >= static_cast<int64_t>(v.labels.size()))
        return "its labels are damaged";
  return "";
}

}  // namespace sculpt::data::textdata
