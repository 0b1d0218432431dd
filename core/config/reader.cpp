// The validating reader: types every value, checks ranges, choices, files and registry names,
// flags unknown keys with a "did you mean", and collects every error with its source and path.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "core/config/visitors.h"
#include "core/registry/registry.h"

namespace sculpt::config {

bool Range::contains(double v) const {
  if (has_lo && (lo_open ? v <= lo : v < lo)) return false;
  if (has_hi && (hi_open ? v >= hi : v > hi)) return false;
  return true;
}

std::string Range::str() const {
  auto num = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return std::string(buf);
  };
  if (has_lo && has_hi)
    return std::string(lo_open ? "(" : "[") + num(lo) + ", " + num(hi) + (hi_open ? ")" : "]");
  if (has_lo) return std::string(lo_open ? "> " : ">= ") + num(lo);
  if (has_hi) return std::string(hi_open ? "< " : "<= ") + num(hi);
  return "any";
}

namespace {

std::string join(const std::vector<std::string>& xs) {
  std::string out;
  for (size_t i = 0; i < xs.size(); ++i) out += (i ? ", " : "") + xs[i];
  return out;
}

bool parse_int(const Node& n, int64_t& out) {
  if (n.kind != Node::Kind::Scalar || n.quoted || n.scalar.empty()) return false;
  const char* s = n.scalar.c_str();
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s, &end, 10);
  if (*end == '\0' && errno == 0) {
    out = v;
    return true;
  }
  double d = std::strtod(s, &end);  // 1e6 is a fine way to write a step count
  if (*end != '\0' || !std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9e15) return false;
  out = static_cast<int64_t>(d);
  return true;
}

bool parse_double(const Node& n, double& out) {
  if (n.kind != Node::Kind::Scalar || n.quoted || n.scalar.empty()) return false;
  char* end = nullptr;
  double d = std::strtod(n.scalar.c_str(), &end);
  if (*end != '\0' || !std::isfinite(d)) return false;
  out = d;
  return true;
}

std::string shown(const Node& n) {
  switch (n.kind) {
    case Node::Kind::Scalar:
      return "'" + n.scalar + "'";
    case Node::Kind::Map:
      return "a map";
    case Node::Kind::Sequence:
      return "a list";
    default:
      return "nothing";
  }
}

class Reader final : public Visitor, public Checker {
 public:
  Reader(const Node* map, std::string path, Source fallback, std::vector<Diagnostic>& errors)
      : map_(map), path_(std::move(path)), fallback_(std::move(fallback)), errors_(errors) {}

  void finish(Section& s) {
    s.check(*this);
    if (!map_ || suppress_unknown_) return;
    std::vector<std::string> known = visited_;
    for (size_t i = 0; i < map_->map.size(); ++i) {
      const std::string& key = map_->map[i].first;
      if (std::find(consumed_.begin(), consumed_.end(), key) != consumed_.end()) continue;
      std::string msg = "unknown key";
      std::string guess = closest_match(key, known);
      if (!guess.empty())
        msg += "; did you mean '" + guess + "'?";
      else if (known.empty())
        msg += " (this section takes no keys)";
      else
        msg += "; valid keys here: " + join(known);
      errors_.push_back({map_->key_sources[i], child(key), msg});
    }
  }

  void field(const char* key, bool& v, const char* /*help*/) override {
    const Node* n = get(key);
    if (!n) return;
    if (n->kind == Node::Kind::Scalar && !n->quoted &&
        (n->scalar == "true" || n->scalar == "false"))
      v = n->scalar == "true";
    else
      error(*n, key, "expected true or false, got " + shown(*n));
  }

  void field(const char* key, int64_t& v, const char* /*help*/, Range r) override {
    const Node* n = get(key);
    if (!n) return;
    int64_t x = 0;
    if (!parse_int(*n, x)) return error(*n, key, "expected an integer, got " + shown(*n));
    if (!r.contains(static_cast<double>(x)))
      return error(*n, key, "expected an integer in " + r.str() + ", got " + n->scalar);
    v = x;
  }

  void field(const char* key, double& v, const char* /*help*/, Range r) override {
    const Node* n = get(key);
    if (!n) return;
    double x = 0;
    if (!parse_double(*n, x)) return error(*n, key, "expected a number, got " + shown(*n));
    if (!r.contains(x))
      return error(*n, key, "expected a number in " + r.str() + ", got " + n->scalar);
    v = x;
  }

  void field(const char* key, std::string& v, const char* /*help*/, Need need) override {
    const Node* n = get(key, need);
    if (!n) return;
    if (n->kind != Node::Kind::Scalar) return error(*n, key, "expected a string, got " + shown(*n));
    v = n->scalar;
  }

  void field(const char* key, std::vector<int64_t>& v, const char* /*help*/, Range r) override {
    read_list<int64_t>(
        key, v, "an integer",
        [&](const Node& n, int64_t& x) {
          return parse_int(n, x) && r.contains(static_cast<double>(x));
        },
        r);
  }

  void field(const char* key, std::vector<double>& v, const char* /*help*/, Range r) override {
    read_list<double>(
        key, v, "a number",
        [&](const Node& n, double& x) { return parse_double(n, x) && r.contains(x); }, r);
  }

  void field(const char* key, std::vector<std::string>& v, const char* /*help*/) override {
    read_list<std::string>(
        key, v, "a string",
        [](const Node& n, std::string& x) {
          if (n.kind != Node::Kind::Scalar) return false;
          x = n.scalar;
          return true;
        },
        Range{});
  }

  void choice(const char* key, std::string& v, const std::vector<std::string>& allowed,
              const char* /*help*/) override {
    const Node* n = get(key);
    if (!n) return;
    if (n->kind == Node::Kind::Scalar &&
        std::find(allowed.begin(), allowed.end(), n->scalar) != allowed.end()) {
      v = n->scalar;
      return;
    }
    std::string msg = "expected one of " + join(allowed) + "; got " + shown(*n);
    if (n->kind == Node::Kind::Scalar) {
      std::string guess = closest_match(n->scalar, allowed);
      if (!guess.empty()) msg += " (did you mean '" + guess + "'?)";
    }
    error(*n, key, msg);
  }

  void step_point(const char* key, StepPoint& v, const char* /*help*/) override {
    const Node* n = get(key);
    if (!n) return;
    if (n->kind != Node::Kind::Scalar || !StepPoint::parse(n->scalar, v))
      error(*n, key, std::string("expected ") + kStepPointForms + ", got " + shown(*n));
  }

  void file(const char* key, std::string& v, const char* /*help*/, Need need) override {
    read_path(key, v, need, "file");
  }

  void directory(const char* key, std::string& v, const char* /*help*/, Need need) override {
    read_path(key, v, need, "directory");
  }

  void section(const char* key, Section& s, const char* /*help*/) override {
    const Node* n = get(key);
    if (n && !n->is_map()) return error(*n, key, "expected a map of keys, got " + shown(*n));
    Reader sub(n, child(key), n ? n->source : here(), errors_);
    s.visit(sub);
    sub.finish(s);
  }

  void list(const char* key, SectionList& items, const char* /*help*/) override {
    const Node* n = get(key);
    if (!n) return;
    if (n->kind != Node::Kind::Sequence) return error(*n, key, "expected a list, got " + shown(*n));
    items.resize(n->seq.size());
    for (size_t i = 0; i < n->seq.size(); ++i) {
      const Node& item = n->seq[i];
      std::string p = child(key) + "[" + std::to_string(i) + "]";
      if (!item.is_map()) {
        errors_.push_back({item.source, p, "expected a map of keys, got " + shown(item)});
        continue;
      }
      Reader sub(&item, p, item.source, errors_);
      items.at(i).visit(sub);
      sub.finish(items.at(i));
    }
  }

  void named(const char* key, std::string& name, std::shared_ptr<Section>& options,
             const char* kind, const char* help, Need need) override {
    std::string before = name;
    size_t errors_before = errors_.size();
    field(key, name, help, need);
    if (errors_.size() != errors_before) {
      suppress_unknown_ = true;  // without a valid name, its option keys cannot be judged
      return;
    }
    if (name.empty()) return;
    const RegistryBase* reg = find_registry(kind);
    const RegistryBase::Info* info = reg ? reg->find(name) : nullptr;
    if (!info) {
      const Node* n = map_ ? map_->find(key) : nullptr;
      std::string msg;
      try {
        if (reg) reg->throw_unknown(name);
        msg = std::string("no registry of ") + kind;
      } catch (const UserError& e) {
        msg = e.what();
      }
      errors_.push_back({n ? n->source : here(), child(key), msg});
      suppress_unknown_ = true;
      return;
    }
    if (!options || name != before) options = info->options ? info->options() : nullptr;
    if (options) {
      options->visit(*this);
      options->check(*this);
    }
  }

  void error(const std::string& key, const std::string& message) override {
    const Node* n = map_ ? map_->find(key) : nullptr;
    errors_.push_back({n ? n->source : here(), child(key), message});
  }

 private:
  std::string child(const std::string& key) const {
    return path_.empty() ? key : path_ + "." + key;
  }
  Source here() const { return map_ ? map_->source : fallback_; }

  const Node* get(const char* key, Need need = Need::optional) {
    visited_.emplace_back(key);
    const Node* n = map_ ? map_->find(key) : nullptr;
    if (n) consumed_.emplace_back(key);
    if (n && n->kind == Node::Kind::Null) n = nullptr;
    if (!n && need == Need::required)
      errors_.push_back({here(), child(key), "missing required key"});
    return n;
  }

  // A path that must exist as a `what` ("file" or "directory") when it is given.
  void read_path(const char* key, std::string& v, Need need, const std::string& what) {
    const Node* n = get(key, need);
    if (!n) return;
    if (n->kind != Node::Kind::Scalar)
      return error(*n, key, "expected a " + what + " path, got " + shown(*n));
    std::error_code ec;
    const bool ok = what == "file" ? std::filesystem::is_regular_file(n->scalar, ec)
                                   : std::filesystem::is_directory(n->scalar, ec);
    if (!n->scalar.empty() && !ok) return error(*n, key, what + " not found: " + n->scalar);
    v = n->scalar;
  }

  void error(const Node& n, const char* key, const std::string& msg) {
    errors_.push_back({n.source, child(key), msg});
  }

  template <class T, class Parse>
  void read_list(const char* key, std::vector<T>& v, const char* what, Parse parse, Range r) {
    const Node* n = get(key);
    if (!n) return;
    if (n->kind != Node::Kind::Sequence)
      return error(*n, key, std::string("expected a list, like [1, 2], got ") + shown(*n));
    std::vector<T> out(n->seq.size());
    bool ok = true;
    for (size_t i = 0; i < n->seq.size(); ++i) {
      if (parse(n->seq[i], out[i])) continue;
      ok = false;
      std::string range = r.has_lo || r.has_hi ? " in " + r.str() : "";
      errors_.push_back({n->seq[i].source, child(key) + "[" + std::to_string(i) + "]",
                         std::string("expected ") + what + range + ", got " + shown(n->seq[i])});
    }
    if (ok) v = std::move(out);
  }

  const Node* map_;
  std::string path_;
  Source fallback_;
  std::vector<Diagnostic>& errors_;
  std::vector<std::string> consumed_;
  std::vector<std::string> visited_;
  bool suppress_unknown_ = false;
};

}  // namespace

void read_section(const Node& node, Section& s, const Source& fallback,
                  std::vector<Diagnostic>& errors) {
  const Node* map = node.kind == Node::Kind::Null ? nullptr : &node;
  if (map && !map->is_map()) {
    errors.push_back({node.source, "", "expected a map of keys"});
    return;
  }
  Reader reader(map, "", fallback, errors);
  s.visit(reader);
  reader.finish(s);
}

}  // namespace sculpt::config
