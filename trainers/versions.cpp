#include "trainers/versions.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iomanip>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/models/model.h"

namespace fs = std::filesystem;

namespace sculpt::trainers::versions {

// ---- SHA-256 (FIPS 180-4) ----
namespace {
struct Sha256 {
  std::array<uint32_t, 8> h{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                            0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::array<uint8_t, 64> buf{};
  size_t used = 0;
  uint64_t bits = 0;
  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
  void block(const uint8_t* p) {
    static const uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2};
    uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = uint32_t(p[4 * i]) << 24 | uint32_t(p[4 * i + 1]) << 16 |
             uint32_t(p[4 * i + 2]) << 8 | uint32_t(p[4 * i + 3]);
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; ++i) {
      const uint32_t t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) +
                          k[i] + w[i];
      const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      hh = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
  }
  void update(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    bits += uint64_t(n) * 8;
    while (n > 0) {
      const size_t take = std::min(n, 64 - used);
      std::memcpy(buf.data() + used, p, take);
      used += take, p += take, n -= take;
      if (used == 64) block(buf.data()), used = 0;
    }
  }
  std::string hex() {
    const uint64_t total = bits;
    const uint8_t one = 0x80, zero = 0;
    update(&one, 1);
    while (used != 56) update(&zero, 1);
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = uint8_t(total >> (56 - 8 * i));
    update(len, 8);
    std::ostringstream o;
    for (uint32_t v : h) o << std::hex << std::setw(8) << std::setfill('0') << v;
    return o.str();
  }
};

constexpr const char* kFormat = "sculpt-version/1";
constexpr const char* kLora = ".wt_lora.";

std::string now_utc() {
  const auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return b;
}

at::Tensor host(const at::Tensor& t) { return t.detach().to(at::kCPU).contiguous(); }

bool same_bits(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const auto x = host(a), y = host(b);
  return std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
}

int64_t bytes_of(const io::NamedTensors& ts) {
  int64_t n = 0;
  for (const auto& [_, t] : ts) n += static_cast<int64_t>(t.nbytes());
  return n;
}

nlohmann::json shape_of(const at::Tensor& t) { return t.sizes().vec(); }

// version.json's checksum: of its dump without the field itself.
std::string self_hash(nlohmann::json j) {
  j.erase("self_sha256");
  const auto s = j.dump();
  return sha256_hex(s.data(), s.size());
}

// The state with each adapter merged as the lora transform computes its weight:
// W + (B A * scale).view(W's shape).
io::NamedTensors merge_adapters(const io::NamedTensors& state, const nlohmann::json& scales,
                                const std::string& what) {
  if (scales.empty()) return state;
  std::map<std::string, at::Tensor> by_name(state.begin(), state.end());
  io::NamedTensors out;
  for (const auto& [name, t] : state) {
    if (name.find(kLora) != std::string::npos) continue;
    const auto dot = name.rfind(".weight");
    const std::string layer = dot != std::string::npos && dot + 7 == name.size()
                                  ? name.substr(0, dot) : std::string();
    if (!layer.empty() && scales.contains(layer)) {
      auto a = by_name.find(layer + kLora + "a"), b = by_name.find(layer + kLora + "b");
      SCULPT_CHECK(a != by_name.end() && b != by_name.end(), what, ": layer ", layer,
                   " has an adapter scale but no adapter tensors");
      const double scale = scales.at(layer).get<double>();
      out.emplace_back(name, t + (b->second.mm(a->second) * scale).view(t.sizes()));
    } else {
      out.emplace_back(name, t);
    }
  }
  return out;
}

nlohmann::json tensor_list(const io::NamedTensors& ts) {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& [name, t] : ts)
    arr.push_back({{"name", name},
                   {"dtype", std::string(c10::toString(t.scalar_type()))},
                   {"shape", shape_of(t)},
                   {"sha256", sha256_tensor(t)}});
  return arr;
}

std::string known_list(const std::vector<int64_t>& ids) {
  std::string s;
  for (auto id : ids) s += (s.empty() ? "" : ", ") + std::to_string(id);
  return s.empty() ? "none (the store is empty)" : s;
}

std::string fmt(double v, int prec = 4) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(prec) << v;
  return o.str();
}
}  // namespace

std::string sha256_hex(const void* data, size_t size) {
  Sha256 s;
  s.update(data, size);
  return s.hex();
}

std::string sha256_file(const std::string& path) {
  const auto bytes = io::read_file(path);
  return sha256_hex(bytes.data(), bytes.size());
}

std::string sha256_tensor(const at::Tensor& t) {
  const auto c = host(t);
  return sha256_hex(c.data_ptr(), c.nbytes());
}

NewVersion capture(models::Model& model, const Callbacks& callbacks) {
  NewVersion v;
  for (auto& [name, t] : model.state_tensors()) v.state.emplace_back(name, host(t).clone());
  std::set<std::string> names;
  for (const auto& [name, _] : v.state) names.insert(name);
  for (const auto& cb : callbacks) {
    if (cb->name() != "lora") continue;
    const auto s = cb->summary();
    if (s.value("merged", false)) continue;
    for (const auto& l : s.value("layers", nlohmann::json::array())) {
      const auto layer = l.at("name").get<std::string>();
      SCULPT_CHECK(names.count(layer + kLora + "a") && names.count(layer + ".weight"),
                   "versions: the lora adapter of layer ", layer, " is not in the model's state");
      v.adapter_scale[layer] = l.at("alpha").get<double>() / static_cast<double>(
                                                                  l.at("rank").get<int64_t>());
    }
  }
  return v;
}

Store::Store(std::string dir) : dir_(std::move(dir)) {}

std::string Store::path_of(int64_t id) const {
  return (fs::path(dir_) / ("v" + std::to_string(id))).string();
}

std::vector<int64_t> Store::ids() const {
  std::vector<int64_t> out;
  if (!fs::is_directory(dir_)) return out;
  for (const auto& e : fs::directory_iterator(dir_)) {
    const auto n = e.path().filename().string();
    if (n.size() < 2 || n[0] != 'v' || !e.is_directory()) continue;
    if (!std::all_of(n.begin() + 1, n.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    out.push_back(std::stoll(n.substr(1)));
  }
  std::sort(out.begin(), out.end());
  return out;
}

int64_t Store::current() const {
  const auto all = ids();
  if (all.empty()) return 0;
  const auto file = fs::path(dir_) / "current";
  if (fs::exists(file)) {
    auto text = io::read_file(file.string());
    const int64_t id = std::atoll(text.c_str());
    SCULPT_CHECK(std::find(all.begin(), all.end(), id) != all.end(), file.string(),
                 ": names version ", text, " which is not in the store (known versions: ",
                 known_list(all), ")");
    return id;
  }
  return all.back();
}

void Store::set_current(int64_t id) {
  io::write_file_atomic((fs::path(dir_) / "current").string(), std::to_string(id) + "\n");
}

nlohmann::json Store::info(int64_t id) const {
  const auto all = ids();
  SCULPT_CHECK(std::find(all.begin(), all.end(), id) != all.end(), dir_, ": no version ", id,
               "; known versions: ", known_list(all));
  const auto file = (fs::path(path_of(id)) / "version.json").string();
  SCULPT_CHECK(fs::exists(file), file, ": missing: the version folder is incomplete");
  const auto j = io::read_json_file(file);
  SCULPT_CHECK(j.is_object() && j.value("format", "") == kFormat, file,
               ": not a version written by sculpt (format ", kFormat, ")");
  SCULPT_CHECK(j.value("self_sha256", "") == self_hash(j), file,
               ": checksum mismatch: the file was changed after it was written");
  return j;
}

void Store::check_files(int64_t id, const nlohmann::json& info) const {
  for (const auto& [name, sum] : info.at("files").items()) {
    const auto file = (fs::path(path_of(id)) / name).string();
    SCULPT_CHECK(fs::exists(file), file, ": missing (version ", id, " records it)");
    const auto found = sha256_file(file);
    SCULPT_CHECK(found == sum.get<std::string>(), file, ": checksum mismatch (recorded ",
                 sum.get<std::string>().substr(0, 16), "..., found ", found.substr(0, 16),
                 "...): the store is corrupt or was changed by hand");
  }
}

io::NamedTensors Store::state(int64_t id) const {
  // The chain from `id` back to its base.
  std::vector<std::pair<int64_t, nlohmann::json>> chain;
  const auto all = ids();
  for (int64_t v = id;;) {
    if (!chain.empty())
      SCULPT_CHECK(std::find(all.begin(), all.end(), v) != all.end(), path_of(chain.back().first),
                   "/version.json: its parent version ", v, " is missing from ", dir_,
                   " (the delta needs it; known versions: ", known_list(all), ")");
    auto j = info(v);
    const bool base = j.at("parent").is_null();
    chain.emplace_back(v, std::move(j));
    if (base) break;
    v = chain.back().second.at("parent").get<int64_t>();
    SCULPT_CHECK(chain.size() <= all.size(), dir_, ": the parent chain of version ", id,
                 " has a cycle");
  }
  std::reverse(chain.begin(), chain.end());
  std::map<std::string, at::Tensor> cur;
  for (const auto& [v, j] : chain) {
    check_files(v, j);
    const auto file = (fs::path(path_of(v)) / j.at("delta").at("file").get<std::string>()).string();
    for (auto& [name, t] : io::load_safetensors(file)) cur[name] = t;
    for (const auto& name : j.value("removed_tensors", nlohmann::json::array()))
      cur.erase(name.get<std::string>());
  }
  // In the version's own order, each tensor checked against its recorded checksum.
  const auto& want = chain.back().second.at("tensors");
  io::NamedTensors out;
  const auto where = path_of(id);
  for (const auto& e : want) {
    const auto name = e.at("name").get<std::string>();
    auto it = cur.find(name);
    SCULPT_CHECK(it != cur.end(), where, ": tensor ", name, " is in no file of its chain");
    SCULPT_CHECK(sha256_tensor(it->second) == e.at("sha256").get<std::string>(), where,
                 ": tensor ", name, " rebuilt from the deltas differs from the recorded one");
    out.emplace_back(name, it->second);
  }
  return out;
}

io::NamedTensors Store::weights(int64_t id) const {
  const auto j = info(id);
  auto w = merge_adapters(state(id), j.value("adapters", nlohmann::json::object()), path_of(id));
  const auto sums = j.value("weights_sha256", nlohmann::json::object());
  for (const auto& [name, t] : w)
    SCULPT_CHECK(!sums.contains(name) || sums.at(name).get<std::string>() == sha256_tensor(t),
                 path_of(id), ": merged weight ", name, " differs from the recorded one");
  return w;
}

int64_t Store::add(const NewVersion& v) {
  const auto all = ids();
  const int64_t parent = current();
  const int64_t id = all.empty() ? 1 : all.back() + 1;
  io::NamedTensors delta;
  nlohmann::json removed = nlohmann::json::array();
  if (parent == 0) {
    delta = v.state;
  } else {
    const auto prev = state(parent);  // checks the chain before anything is written
    std::map<std::string, at::Tensor> p(prev.begin(), prev.end());
    std::set<std::string> now;
    for (const auto& [name, t] : v.state) {
      now.insert(name);
      auto it = p.find(name);
      if (it == p.end() || !same_bits(it->second, t)) delta.emplace_back(name, t);
    }
    for (const auto& [name, _] : prev)
      if (!now.count(name)) removed.push_back(name);
  }
  nlohmann::json scales = nlohmann::json::object();
  for (const auto& [k, s] : v.adapter_scale) scales[k] = s;
  const auto weights = merge_adapters(v.state, scales, "versions");
  nlohmann::json wsums = nlohmann::json::object();
  if (!scales.empty())
    for (const auto& [name, t] : weights) wsums[name] = sha256_tensor(t);
  const std::string file = parent == 0 ? "weights.safetensors" : "delta.safetensors";
  nlohmann::json delta_names = nlohmann::json::array();
  for (const auto& [name, _] : delta) delta_names.push_back(name);
  const int64_t full = bytes_of(weights);
  fs::create_directories(dir_);
  io::replace_dir_atomic(path_of(id), [&](const fs::path& tmp) {
    const auto path = (tmp / file).string();
    io::save_safetensors(path, delta, {{"sculpt_version", std::to_string(id)}});
    const auto size = static_cast<int64_t>(fs::file_size(path));
    nlohmann::json j = {
        {"format", kFormat},
        {"id", id},
        {"parent", parent == 0 ? nlohmann::json(nullptr) : nlohmann::json(parent)},
        {"created", now_utc()},
        {"source", v.source},
        {"changes", v.changes},
        {"metrics", v.metrics},
        {"config_hash", v.config_hash},
        {"config", v.config_yaml},
        {"kind", !scales.empty() ? "adapters" : parent == 0 ? "full" : "changed tensors"},
        {"delta",
         {{"file", file},
          {"tensors", delta_names},
          {"bytes", size},
          {"full_bytes", full},
          {"ratio", full > 0 ? static_cast<double>(size) / static_cast<double>(full) : 0.0}}},
        {"removed_tensors", removed},
        {"adapters", scales},
        {"tensors", tensor_list(v.state)},
        {"weights_sha256", wsums},
        {"files", {{file, sha256_file(path)}}}};
    j["self_sha256"] = self_hash(j);
    io::write_file_atomic((tmp / "version.json").string(), j.dump(2) + "\n");
  });
  set_current(id);
  return id;
}

// ---- the CLI's actions ----

namespace {
double headline(const nlohmann::json& j) {
  const auto& m = j.value("metrics", nlohmann::json::object());
  return m.contains("headline") && m["headline"].is_number() ? m["headline"].get<double>() : NAN;
}

std::string change_summary(const nlohmann::json& j) {
  const auto& c = j.value("changes", nlohmann::json::object());
  std::string s;
  if (c.contains("documents_added")) s += "+" + std::to_string(c["documents_added"].get<int64_t>()) + " docs";
  if (c.contains("documents_removed") && c["documents_removed"].get<int64_t>() > 0)
    s += std::string(s.empty() ? "" : " ") + "-" +
         std::to_string(c["documents_removed"].get<int64_t>()) + " docs";
  if (c.contains("what")) s += std::string(s.empty() ? "" : "; ") + c["what"].get<std::string>();
  return s.empty() ? "-" : s;
}

std::map<std::string, nlohmann::json> slices_of(const nlohmann::json& j) {
  std::map<std::string, nlohmann::json> out;
  const auto& m = j.value("metrics", nlohmann::json::object());
  for (const auto& s : m.value("slices", nlohmann::json::array()))
    out[s.value("name", std::string("?"))] = s;
  return out;
}

std::string slice_cell(const nlohmann::json& s) {
  if (s.is_null() || !s.contains("value") || !s["value"].is_number()) return "-";
  std::string c = fmt(s["value"].get<double>());
  if (s.contains("lo") && s.contains("hi"))
    c += " [" + fmt(s["lo"].get<double>(), 3) + ", " + fmt(s["hi"].get<double>(), 3) + "]";
  if (s.contains("n")) c += " n=" + std::to_string(s["n"].get<int64_t>());
  return c;
}
}  // namespace

std::string list_text(const Store& s) {
  std::ostringstream o;
  const auto all = s.ids();
  if (all.empty()) return s.dir() + ": no versions\n";
  const int64_t cur = s.current();
  char line[512];
  std::snprintf(line, sizeof line, "  %-4s %-6s %-20s %-16s %-10s %-12s %s\n", "id", "parent",
                "created", "kind", "delta", "metric", "changes");
  o << line;
  for (auto id : all) {
    const auto j = s.info(id);
    const auto& d = j.at("delta");
    const double h = headline(j);
    const auto metric = j.value("metrics", nlohmann::json::object()).value("metric", std::string());
    std::snprintf(line, sizeof line, "%s %-4lld %-6s %-20s %-16s %-10s %-12s %s\n",
                  id == cur ? "*" : " ", static_cast<long long>(id),
                  j.at("parent").is_null() ? "-" : std::to_string(j.at("parent").get<int64_t>()).c_str(),
                  j.value("created", std::string()).c_str(), j.value("kind", std::string()).c_str(),
                  (std::to_string(d.value("bytes", int64_t{0}) / 1024) + " KiB").c_str(),
                  std::isfinite(h) ? (metric + " " + fmt(h, 3)).c_str() : "-",
                  change_summary(j).c_str());
    o << line;
  }
  o << "(* current)\n";
  return o.str();
}

std::string show_text(const Store& s, int64_t id) {
  auto j = s.info(id);
  // The tensor list is long; its count and the delta's names say what a reader needs.
  const auto n = j["tensors"].size();
  j["tensors"] = std::to_string(n) + " tensors (sha256 each in " + s.path_of(id) + "/version.json)";
  return j.dump(2) + "\n";
}

std::string diff_text(const Store& s, int64_t a, int64_t b) {
  const auto ja = s.info(a), jb = s.info(b);
  const auto sa = s.state(a), sb = s.state(b);
  std::map<std::string, at::Tensor> ma(sa.begin(), sa.end()), mb(sb.begin(), sb.end());
  std::ostringstream o;
  o << "versions " << a << " -> " << b << " (" << s.dir() << ")\n\n";
  o << "tensors\n";
  char line[512];
  std::snprintf(line, sizeof line, "  %-56s %-10s %12s %14s\n", "name", "status", "elements",
                "max |b - a|");
  o << line;
  int64_t changed = 0, changed_bytes = 0, same = 0;
  std::set<std::string> names;
  for (const auto& [n, _] : sa) names.insert(n);
  for (const auto& [n, _] : sb) names.insert(n);
  for (const auto& n : names) {
    auto ia = ma.find(n), ib = mb.find(n);
    std::string status, diff = "-";
    int64_t numel = 0;
    if (ia == ma.end()) {
      status = "added", numel = ib->second.numel();
    } else if (ib == mb.end()) {
      status = "removed", numel = ia->second.numel();
    } else if (same_bits(ia->second, ib->second)) {
      ++same;
      continue;
    } else {
      numel = ib->second.numel();
      status = "changed";
      if (ia->second.sizes() == ib->second.sizes())
        diff = fmt((ib->second.to(at::kDouble) - ia->second.to(at::kDouble)).abs().max().item<double>(), 6);
      else
        status = "reshaped";
    }
    ++changed;
    changed_bytes += static_cast<int64_t>((ib != mb.end() ? ib->second : ia->second).nbytes());
    std::snprintf(line, sizeof line, "  %-56s %-10s %12lld %14s\n", n.c_str(), status.c_str(),
                  static_cast<long long>(numel), diff.c_str());
    o << line;
  }
  o << "  " << changed << " tensors differ (" << changed_bytes << " bytes), " << same
    << " identical\n\nsize\n";
  for (const auto& [id, j] : {std::pair<int64_t, const nlohmann::json*>{a, &ja}, {b, &jb}}) {
    const auto& d = j->at("delta");
    o << "  version " << id << ": " << j->value("kind", std::string()) << ", stored "
      << d.value("bytes", int64_t{0}) << " bytes, full weights " << d.value("full_bytes", int64_t{0})
      << " bytes (ratio " << fmt(d.value("ratio", 0.0), 4) << ")\n";
  }
  o << "\nmetrics (" << ja.value("metrics", nlohmann::json::object()).value("metric", std::string("metric"))
    << ", 95% Wilson interval, queries)\n";
  const auto pa = slices_of(ja), pb = slices_of(jb);
  std::set<std::string> slices;
  for (const auto& [k, _] : pa) slices.insert(k);
  for (const auto& [k, _] : pb) slices.insert(k);
  std::snprintf(line, sizeof line, "  %-16s %-36s %-36s %s\n", "slice",
                ("v" + std::to_string(a)).c_str(), ("v" + std::to_string(b)).c_str(), "b - a");
  o << line;
  for (const auto& k : slices) {
    const auto& x = pa.count(k) ? pa.at(k) : nlohmann::json();
    const auto& y = pb.count(k) ? pb.at(k) : nlohmann::json();
    std::string d = "-";
    if (!x.is_null() && !y.is_null() && x.contains("value") && y.contains("value") &&
        x["value"].is_number() && y["value"].is_number())
      d = fmt(y["value"].get<double>() - x["value"].get<double>());
    std::snprintf(line, sizeof line, "  %-16s %-36s %-36s %s\n", k.c_str(), slice_cell(x).c_str(),
                  slice_cell(y).c_str(), d.c_str());
    o << line;
  }
  const double ha = headline(ja), hb = headline(jb);
  if (std::isfinite(ha) || std::isfinite(hb))
    o << "  " << std::left << std::setw(16) << "headline" << " " << std::setw(36)
      << (std::isfinite(ha) ? fmt(ha) : "-") << " " << std::setw(36)
      << (std::isfinite(hb) ? fmt(hb) : "-") << " "
      << (std::isfinite(ha) && std::isfinite(hb) ? fmt(hb - ha) : "-") << "\n";
  if (ja.value("config_hash", "") != jb.value("config_hash", ""))
    o << "\nconfigs differ (hash " << ja.value("config_hash", "") << " vs "
      << jb.value("config_hash", "") << ")\n";
  return o.str();
}

std::string rollback(Store& s, int64_t id, std::string out) {
  const auto j = s.info(id);
  const auto w = s.weights(id);  // every checksum checked before anything is written
  if (out.empty()) out = (fs::path(s.dir()) / "rollback" / ("v" + std::to_string(id))).string();
  SCULPT_CHECK(!fs::exists(out) || fs::exists(fs::path(out) / "rollback.json") ||
                   (fs::is_directory(out) && fs::is_empty(out)),
               out, ": exists and is not an earlier rollback; choose another --out");
  fs::create_directories(fs::path(out).parent_path().empty() ? fs::path(".")
                                                             : fs::path(out).parent_path());
  io::replace_dir_atomic(out, [&](const fs::path& tmp) {
    io::save_safetensors((tmp / "model.safetensors").string(), w,
                         {{"sculpt_version", std::to_string(id)}});
    io::write_file_atomic((tmp / "config.yaml").string(), j.value("config", std::string()));
    io::write_file_atomic((tmp / "version.json").string(), j.dump(2) + "\n");
    nlohmann::json sums = nlohmann::json::object();
    for (const auto& [name, t] : w) sums[name] = sha256_tensor(t);
    io::write_file_atomic((tmp / "rollback.json").string(),
                          nlohmann::json({{"store", fs::absolute(s.dir()).string()},
                                          {"version", id},
                                          {"created", now_utc()},
                                          {"weights_sha256", sums}})
                                  .dump(2) +
                              "\n");
  });
  s.set_current(id);
  return out;
}

int64_t add_run(Store& s, const std::string& run_dir) {
  const auto weights = (fs::path(run_dir) / "model.safetensors").string();
  SCULPT_CHECK(fs::exists(weights), weights, ": no such file (a finished run has it)");
  NewVersion v;
  v.state = io::load_safetensors(weights);
  const auto cfg = fs::path(run_dir) / "config.yaml";
  if (fs::exists(cfg)) v.config_yaml = io::read_file(cfg.string());
  v.config_hash = sha256_hex(v.config_yaml.data(), v.config_yaml.size()).substr(0, 16);
  v.source = {{"run", fs::absolute(run_dir).string()}, {"added_by", "sculpt versions add"}};
  v.changes = {{"what", "run " + fs::path(run_dir).filename().string()}};
  const auto summary = fs::path(run_dir) / "summary.json";
  if (fs::exists(summary)) {
    const auto j = io::read_json_file(summary.string());
    if (j.contains("continual") && j["continual"].contains("slices")) {
      v.metrics = {{"metric", j["continual"].value("metric", std::string())},
                   {"slices", j["continual"]["slices"]}};
      if (j["continual"].contains("average_accuracy"))
        v.metrics["headline"] = j["continual"]["average_accuracy"];
    } else if (j.contains("final") && j["final"].contains("test")) {
      const auto& t = j["final"]["test"];
      for (const char* k : {"hits@1", "accuracy"})
        if (t.contains(k)) {
          nlohmann::json slice = {{"name", "test"}, {"value", t[k]}};
          const std::string kk = k;
          if (t.contains(kk + "_n")) slice["n"] = static_cast<int64_t>(t[kk + "_n"].get<double>());
          if (t.contains(kk + "_lo")) slice["lo"] = t[kk + "_lo"], slice["hi"] = t[kk + "_hi"];
          v.metrics = {{"metric", k}, {"headline", t[k]}, {"slices", {slice}}};
          break;
        }
    }
  }
  return s.add(v);
}

}  // namespace sculpt::trainers::versions
