#include "trainers/versions.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <set>

#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/models/model.h"
#include "trainers/data_fingerprint.h"

namespace fs = std::filesystem;

namespace sculpt::trainers::versions {

namespace {

constexpr const char* kFormat = "sculpt-version/1";
constexpr const char* kLora = ".wt_lora.";

at::Tensor host(const at::Tensor& t) { return t.detach().to(at::kCPU).contiguous(); }

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

}  // namespace

std::string now_utc() {
  const auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return b;
}

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
    const auto mismatch = fingerprint_mismatch(info(parent).value("data", nlohmann::json()), v.data);
    SCULPT_CHECK(mismatch.empty(), dir_, ": the new version's data differs from its parent "
                 "version ", parent, "'s (parent vs new):\n", mismatch, "\nAn update keeps its "
                 "parent's tokenizer and document IDs; record a model over other ids in another "
                 "store");
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
        {"data", v.data},
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

}  // namespace sculpt::trainers::versions
