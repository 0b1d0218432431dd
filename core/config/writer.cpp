// Resolved-config dump (YAML that reads back to the same structs) and the key listing.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "core/config/visitors.h"
#include "core/registry/registry.h"

namespace sculpt::config {

std::string format_double(double v) {
  char buf[40];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string s = buf;
  // Keep it a float to the eye (and to YAML readers that care): 1 -> 1.0
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

namespace {

class Writer final : public Visitor {
 public:
  explicit Writer(YAML::Emitter& out) : out_(out) {}

  void field(const char* key, bool& v, const char*) override {
    out_ << YAML::Key << key << YAML::Value << v;
  }
  void field(const char* key, int64_t& v, const char*, Range) override {
    out_ << YAML::Key << key << YAML::Value << v;
  }
  void field(const char* key, double& v, const char*, Range) override {
    out_ << YAML::Key << key << YAML::Value << format_double(v);
  }
  void field(const char* key, std::string& v, const char*, Need) override { str(key, v); }
  void field(const char* key, std::vector<int64_t>& v, const char*, Range) override {
    out_ << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (auto x : v) out_ << x;
    out_ << YAML::EndSeq;
  }
  void field(const char* key, std::vector<double>& v, const char*, Range) override {
    out_ << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (auto x : v) out_ << format_double(x);
    out_ << YAML::EndSeq;
  }
  void field(const char* key, std::vector<std::string>& v, const char*) override {
    out_ << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const auto& x : v) out_ << YAML::DoubleQuoted << x;
    out_ << YAML::EndSeq;
  }
  void choice(const char* key, std::string& v, const std::vector<std::string>&,
              const char*) override {
    str(key, v);
  }
  void step_point(const char* key, StepPoint& v, const char*) override {
    if (v.unit == StepPoint::Unit::epochs)
      str(key, v.str());
    else
      out_ << YAML::Key << key << YAML::Value << v.str();
  }
  void file(const char* key, std::string& v, const char*, Need) override { str(key, v); }
  void directory(const char* key, std::string& v, const char*, Need) override { str(key, v); }
  void section(const char* key, Section& s, const char*) override {
    out_ << YAML::Key << key << YAML::Value << YAML::BeginMap;
    s.visit(*this);
    out_ << YAML::EndMap;
  }
  void list(const char* key, SectionList& items, const char*) override {
    out_ << YAML::Key << key << YAML::Value << YAML::BeginSeq;
    for (size_t i = 0; i < items.size(); ++i) {
      out_ << YAML::BeginMap;
      items.at(i).visit(*this);
      out_ << YAML::EndMap;
    }
    out_ << YAML::EndSeq;
  }
  void named(const char* key, std::string& name, std::shared_ptr<Section>& options, const char*,
             const char*, Need) override {
    str(key, name);
    if (options) options->visit(*this);
  }

 private:
  void str(const char* key, const std::string& v) {
    out_ << YAML::Key << key << YAML::Value << YAML::DoubleQuoted << v;
  }
  YAML::Emitter& out_;
};

std::string join_ints(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

class Lister final : public Visitor {
 public:
  Lister(std::vector<KeyDoc>& out, std::string prefix, std::string when)
      : out_(out), prefix_(std::move(prefix)), when_(std::move(when)) {}

  void field(const char* key, bool& v, const char* help) override {
    add(key, "bool", v ? "true" : "false", help);
  }
  void field(const char* key, int64_t& v, const char* help, Range r) override {
    add(key, ranged("int", r), std::to_string(v), help);
  }
  void field(const char* key, double& v, const char* help, Range r) override {
    add(key, ranged("float", r), format_double(v), help);
  }
  void field(const char* key, std::string& v, const char* help, Need need) override {
    add(key, need == Need::required ? "string, required" : "string", quoted(v), help);
  }
  void field(const char* key, std::vector<int64_t>& v, const char* help, Range r) override {
    add(key, ranged("list of int", r), join_ints(v), help);
  }
  void field(const char* key, std::vector<double>& v, const char* help, Range r) override {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + format_double(v[i]);
    add(key, ranged("list of float", r), s + "]", help);
  }
  void field(const char* key, std::vector<std::string>& v, const char* help) override {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
    add(key, "list of string", s + "]", help);
  }
  void choice(const char* key, std::string& v, const std::vector<std::string>& allowed,
              const char* help) override {
    std::string t = "one of ";
    for (size_t i = 0; i < allowed.size(); ++i) t += (i ? ", " : "") + allowed[i];
    add(key, t, quoted(v), help);
  }
  void step_point(const char* key, StepPoint& v, const char* help) override {
    add(key, "step point (500, 2e or 0.5 of the run)", v.str(), help);
  }
  void file(const char* key, std::string& v, const char* help, Need need) override {
    add(key, need == Need::required ? "file path, required" : "file path", quoted(v), help);
  }
  void directory(const char* key, std::string& v, const char* help, Need need) override {
    add(key, need == Need::required ? "directory, required" : "directory", quoted(v), help);
  }
  void section(const char* key, Section& s, const char* help) override {
    add(key, "section", "", help);
    Lister sub(out_, path(key), when_);
    s.visit(sub);
  }
  void list(const char* key, SectionList& items, const char* help) override {
    add(key, "list of sections", "[]", help);
    items.resize(1);
    Lister sub(out_, path(key) + "[]", when_);
    items.at(0).visit(sub);
    items.resize(0);
  }
  void named(const char* key, std::string& name, std::shared_ptr<Section>&, const char* kind,
             const char* help, Need need) override {
    const RegistryBase* reg = find_registry(kind);
    std::string type = std::string("name of a registered ") + (reg ? reg->noun() : kind);
    add(key, need == Need::required ? type + ", required" : type, quoted(name), help);
    if (!reg) return;
    for (const auto& info : reg->entries()) {
      if (!info.options) continue;
      auto opts = info.options();
      Lister sub(out_, prefix_, path(key) + " = " + info.name);
      opts->visit(sub);
    }
  }

 private:
  static std::string quoted(const std::string& v) { return "\"" + v + "\""; }
  static std::string ranged(const std::string& t, const Range& r) {
    return r.has_lo || r.has_hi ? t + " " + r.str() : t;
  }
  std::string path(const char* key) const { return prefix_.empty() ? key : prefix_ + "." + key; }
  void add(const char* key, std::string type, std::string def, const char* help) {
    out_.push_back({path(key), std::move(type), std::move(def), help, when_});
  }
  std::vector<KeyDoc>& out_;
  std::string prefix_, when_;
};

}  // namespace

std::string dump_yaml(Section& s) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  Writer w(out);
  s.visit(w);
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

std::vector<KeyDoc> list_keys(Section& s) {
  std::vector<KeyDoc> all;
  Lister l(all, "", "");
  s.visit(l);
  // Options shared by several entries of one registry (adam and adamw: beta1...) become one row.
  std::vector<KeyDoc> out;
  for (auto& k : all) {
    auto same = std::find_if(out.begin(), out.end(), [&](const KeyDoc& o) {
      return o.path == k.path && o.type == k.type && o.default_value == k.default_value &&
             o.help == k.help && !o.when.empty() && !k.when.empty();
    });
    if (same == out.end()) {
      out.push_back(std::move(k));
    } else {
      same->when += ", " + k.when.substr(k.when.rfind(' ') + 1);
    }
  }
  return out;
}

}  // namespace sculpt::config
