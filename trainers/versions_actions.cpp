// The `sculpt versions` actions on a store (versions.h): list, show, diff (what the versions
// recorded; the A/B measurement is versions_ab.cpp), rollback and add.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/logging/logging.h"
#include "trainers/data_fingerprint.h"
#include "trainers/increments.h"
#include "trainers/versions.h"

namespace fs = std::filesystem;

namespace sculpt::trainers::versions {

namespace {
std::string fmt(double v, int prec = 4) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(prec) << v;
  return o.str();
}

double headline(const nlohmann::json& j) {
  const auto& m = j.value("metrics", nlohmann::json::object());
  return m.contains("headline") && m["headline"].is_number() ? m["headline"].get<double>() : NAN;
}

nlohmann::json number_or_null(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nullptr;
}

std::string change_summary(const nlohmann::json& j) {
  const auto& c = j.value("changes", nlohmann::json::object());
  std::string s;
  if (c.contains("documents_added"))
    s += "+" + std::to_string(c["documents_added"].get<int64_t>()) + " docs";
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

// "0.6000 [0.446, 0.737]" (and " n=40" with `with_n`); "-" for none.
std::string slice_cell(const nlohmann::json& s, bool with_n = true) {
  if (s.is_null() || !s.contains("value") || !s["value"].is_number()) return "-";
  std::string c = fmt(s["value"].get<double>());
  if (s.contains("lo") && s.contains("hi"))
    c += " [" + fmt(s["lo"].get<double>(), 3) + ", " + fmt(s["hi"].get<double>(), 3) + "]";
  if (with_n && s.contains("n")) c += " n=" + std::to_string(s["n"].get<int64_t>());
  return c;
}

std::string signed_diff(const nlohmann::json& d) {
  if (!d.is_number()) return "-";
  const double v = d.get<double>();
  return (v >= 0 ? "+" : "") + fmt(v);
}

std::string row(const std::string& a, const std::string& b, const std::string& c,
                const std::string& d, const std::string& e = "") {
  char line[512];
  std::snprintf(line, sizeof line, "  %-16s %-36s %-36s %s%s\n", a.c_str(), b.c_str(), c.c_str(),
                d.c_str(), e.c_str());
  return line;
}

void ab_text(std::ostringstream& o, const nlohmann::json& j, const std::string& va,
             const std::string& vb) {
  o << "\nA/B: both rebuilt and evaluated on the same test sets (the data config of version "
    << j.at("config_from") << "; " << j.value("metric", std::string()) << ", 95% Wilson interval; "
    << j.value("device", std::string()) << ", " << j.value("threads", 0) << " threads)\n";
  char line[512];
  std::snprintf(line, sizeof line, "  %-16s %8s  %-24s %-24s %s\n", "slice", "queries", va.c_str(),
                vb.c_str(), "b - a");
  o << line;
  for (const auto& s : j.at("slices")) {
    std::snprintf(line, sizeof line, "  %-16s %8lld  %-24s %-24s %s\n",
                  s.value("name", std::string()).c_str(),
                  static_cast<long long>(s.value("n", int64_t{0})),
                  slice_cell(s.at("a"), false).c_str(), slice_cell(s.at("b"), false).c_str(),
                  signed_diff(s.value("diff", nlohmann::json())).c_str());
    o << line;
  }
  const auto& h = j.at("headline");
  std::snprintf(line, sizeof line, "  %-16s %8s  %-24s %-24s %s\n", "mean", "",
                slice_cell({{"value", h.at("a")}}).c_str(),
                slice_cell({{"value", h.at("b")}}).c_str(),
                signed_diff(h.value("diff", nlohmann::json())).c_str());
  o << line << "bytes\n";
  for (const char* k : {"a", "b"}) {
    const auto& b = j.at("bytes").at(k);
    o << "  " << (k[0] == 'a' ? va : vb) << ": weights " << b.value("weights", int64_t{0})
      << " (model.safetensors after rollback), stored " << b.value("stored", int64_t{0}) << " ("
      << b.value("file", std::string()) << ", " << b.value("kind", std::string()) << ", "
      << fmt(b.value("ratio", 0.0), 3) << " of the weights)\n";
  }
  const auto& l = j.value("latency", nlohmann::json());
  if (l.is_object()) {
    o << "batch-1 latency per query (median of " << l.value("rounds", 0)
      << " alternating rounds of " << l.value("queries", 0) << " queries)\n  " << va << ": "
      << fmt(l.value("a_ms", 0.0), 3) << " ms, " << vb << ": " << fmt(l.value("b_ms", 0.0), 3)
      << " ms (b / a " << fmt(l.value("b_ms", 0.0) / std::max(1e-12, l.value("a_ms", 0.0)), 3)
      << ")\n";
  }
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
    std::snprintf(
        line, sizeof line, "%s %-4lld %-6s %-20s %-16s %-10s %-12s %s\n", id == cur ? "*" : " ",
        static_cast<long long>(id),
        j.at("parent").is_null() ? "-" : std::to_string(j.at("parent").get<int64_t>()).c_str(),
        j.value("created", std::string()).c_str(), j.value("kind", std::string()).c_str(),
        (std::to_string(d.value("bytes", int64_t{0}) / 1024) + " KiB").c_str(),
        std::isfinite(h) ? (metric + " " + fmt(h, 3)).c_str() : "-", change_summary(j).c_str());
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

nlohmann::json diff_json(const Store& s, int64_t a, int64_t b) {
  const auto ja = s.info(a), jb = s.info(b);
  const auto sa = s.state(a), sb = s.state(b);
  std::map<std::string, at::Tensor> ma(sa.begin(), sa.end()), mb(sb.begin(), sb.end());
  nlohmann::json changed = nlohmann::json::array();
  int64_t changed_bytes = 0, same = 0;
  std::set<std::string> names;
  for (const auto& [n, _] : sa) names.insert(n);
  for (const auto& [n, _] : sb) names.insert(n);
  for (const auto& n : names) {
    auto ia = ma.find(n), ib = mb.find(n);
    std::string status;
    nlohmann::json diff;
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
        diff = (ib->second.to(at::kDouble) - ia->second.to(at::kDouble)).abs().max().item<double>();
      else
        status = "reshaped";
    }
    changed_bytes += static_cast<int64_t>((ib != mb.end() ? ib->second : ia->second).nbytes());
    changed.push_back(
        {{"name", n}, {"status", status}, {"elements", numel}, {"max_abs_diff", diff}});
  }
  nlohmann::json size = nlohmann::json::object();
  for (const auto& [k, j] : {std::pair<const char*, const nlohmann::json*>{"a", &ja}, {"b", &jb}}) {
    const auto& d = j->at("delta");
    size[k] = {{"kind", j->value("kind", std::string())},
               {"stored_bytes", d.value("bytes", int64_t{0})},
               {"full_bytes", d.value("full_bytes", int64_t{0})},
               {"ratio", d.value("ratio", 0.0)}};
  }
  const auto pa = slices_of(ja), pb = slices_of(jb);
  // In the order the versions list them (increments in order), the longer list first.
  std::vector<std::string> slice_names;
  const auto& longer = pb.size() >= pa.size() ? jb : ja;
  const auto& shorter = pb.size() >= pa.size() ? ja : jb;
  for (const auto* j : {&longer, &shorter})
    for (const auto& x :
         j->value("metrics", nlohmann::json::object()).value("slices", nlohmann::json::array())) {
      const auto k = x.value("name", std::string("?"));
      if (std::find(slice_names.begin(), slice_names.end(), k) == slice_names.end())
        slice_names.push_back(k);
    }
  nlohmann::json slices = nlohmann::json::array();
  for (const auto& k : slice_names) {
    const auto x = pa.count(k) ? pa.at(k) : nlohmann::json();
    const auto y = pb.count(k) ? pb.at(k) : nlohmann::json();
    nlohmann::json d;
    if (!x.is_null() && !y.is_null() && x.contains("value") && y.contains("value") &&
        x["value"].is_number() && y["value"].is_number())
      d = y["value"].get<double>() - x["value"].get<double>();
    slices.push_back({{"name", k}, {"a", x}, {"b", y}, {"diff", d}});
  }
  const double ha = headline(ja), hb = headline(jb);
  return {
      {"store", s.dir()},
      {"a", a},
      {"b", b},
      {"tensors", {{"differ", changed}, {"differ_bytes", changed_bytes}, {"identical", same}}},
      {"size", size},
      {"recorded",
       {{"metric",
         ja.value("metrics", nlohmann::json::object()).value("metric", std::string("metric"))},
        {"slices", slices},
        {"headline", {{"a", number_or_null(ha)}, {"b", number_or_null(hb)}}}}},
      {"config_hash", {{"a", ja.value("config_hash", "")}, {"b", jb.value("config_hash", "")}}}};
}

std::string diff_text(const nlohmann::json& j) {
  const auto va = "v" + std::to_string(j.at("a").get<int64_t>());
  const auto vb = "v" + std::to_string(j.at("b").get<int64_t>());
  std::ostringstream o;
  o << "versions " << j.at("a") << " -> " << j.at("b") << " (" << j.at("store").get<std::string>()
    << ")\n\ntensors\n";
  char line[512];
  std::snprintf(line, sizeof line, "  %-56s %-10s %12s %14s\n", "name", "status", "elements",
                "max |b - a|");
  o << line;
  const auto& t = j.at("tensors");
  for (const auto& c : t.at("differ")) {
    const auto& d = c.at("max_abs_diff");
    std::snprintf(line, sizeof line, "  %-56s %-10s %12lld %14s\n",
                  c.at("name").get<std::string>().c_str(),
                  c.at("status").get<std::string>().c_str(),
                  static_cast<long long>(c.at("elements").get<int64_t>()),
                  d.is_number() ? fmt(d.get<double>(), 6).c_str() : "-");
    o << line;
  }
  o << "  " << t.at("differ").size() << " tensors differ (" << t.at("differ_bytes") << " bytes), "
    << t.at("identical") << " identical\n\nsize\n";
  for (const char* k : {"a", "b"}) {
    const auto& d = j.at("size").at(k);
    o << "  version " << j.at(k) << ": " << d.value("kind", std::string()) << ", stored "
      << d.value("stored_bytes", int64_t{0}) << " bytes, full weights "
      << d.value("full_bytes", int64_t{0}) << " bytes (ratio " << fmt(d.value("ratio", 0.0), 4)
      << ")\n";
  }
  const auto& r = j.at("recorded");
  o << "\nrecorded metrics (" << r.at("metric").get<std::string>()
    << ", 95% Wilson interval, queries; each measured on its own run's data)\n"
    << row("slice", va, vb, "b - a");
  for (const auto& s : r.at("slices"))
    o << row(s.at("name").get<std::string>(), slice_cell(s.at("a")), slice_cell(s.at("b")),
             signed_diff(s.at("diff")));
  const auto& h = r.at("headline");
  if (h.at("a").is_number() || h.at("b").is_number())
    o << row("headline", slice_cell({{"value", h.at("a")}}), slice_cell({{"value", h.at("b")}}),
             h.at("a").is_number() && h.at("b").is_number()
                 ? signed_diff(h.at("b").get<double>() - h.at("a").get<double>())
                 : "-");
  const auto& ch = j.at("config_hash");
  if (ch.at("a") != ch.at("b"))
    o << "\nconfigs differ (hash " << ch.at("a").get<std::string>() << " vs "
      << ch.at("b").get<std::string>() << ")\n";
  if (j.contains("ab")) ab_text(o, j.at("ab"), va, vb);
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

namespace {
// The tokenizer and ID scheme of a finished run's config (its last increment's data, for an
// incremental run); null when the config no longer reads (a warning: nothing to check against).
nlohmann::json run_fingerprint(const std::string& yaml, const std::string& where) {
  if (yaml.empty()) return nullptr;
  try {
    const auto c = config::Config::parse(yaml, where);
    return data_fingerprint(c.increments.empty()
                                ? c.data
                                : increment_data(c, static_cast<int64_t>(c.increments.size()) - 1));
  } catch (const std::exception& e) {
    log::warn("versions add: ", where, ": no tokenizer / ID fingerprint (", e.what(), ")");
    return nullptr;
  }
}
}  // namespace

int64_t add_run(Store& s, const std::string& run_dir) {
  const auto weights = (fs::path(run_dir) / "model.safetensors").string();
  SCULPT_CHECK(fs::exists(weights), weights, ": no such file (a finished run has it)");
  NewVersion v;
  v.state = io::load_safetensors(weights);
  const auto cfg = fs::path(run_dir) / "config.yaml";
  if (fs::exists(cfg)) v.config_yaml = io::read_file(cfg.string());
  v.config_hash = sha256_hex(v.config_yaml.data(), v.config_yaml.size()).substr(0, 16);
  v.data = run_fingerprint(v.config_yaml, cfg.string());
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
