// Typed config sections. Each section is a plain struct with inline defaults and one visit()
// that lists its fields once; that list drives parsing (with validation), the resolved YAML
// dump, the key listing behind docs/config.md, and nothing else looks options up by string.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/config/step_point.h"

namespace sculpt::config {

// A closed/open numeric interval for validation; default: unbounded.
struct Range {
  double lo = 0, hi = 0;
  bool has_lo = false, has_hi = false;
  bool lo_open = false, hi_open = false;

  static Range at_least(double v) { return {v, 0, true, false, false, false}; }
  static Range above(double v) { return {v, 0, true, false, true, false}; }
  static Range closed(double a, double b) { return {a, b, true, true, false, false}; }
  static Range half_open(double a, double b) { return {a, b, true, true, false, true}; }  // [a, b)
  bool contains(double v) const;
  std::string str() const;  // "[0, 1)", ">= 1", "> 0"
};

enum class Need { optional, required };

class Visitor;
class Checker;

// The YAML spellings of an enum's values, for Visitor::choice into an enum class: one table
// next to the enum, parsed once when the config is read (code then switches on the enum).
template <class E>
using Spellings = std::vector<std::pair<E, const char*>>;
// The value spelled `text` into `out` (for files other than configs: manifests, states); false
// when no value has that spelling.
template <class E>
bool parse_spelling(const Spellings<E>& table, const std::string& text, E& out) {
  for (const auto& [e, name] : table)
    if (text == name) {
      out = e;
      return true;
    }
  return false;
}
// The spelling of `v` (for summaries and logs).
template <class E>
const char* spelling(const Spellings<E>& table, E v) {
  for (const auto& [e, name] : table)
    if (e == v) return name;
  return "?";
}

class Section {
 public:
  virtual ~Section() = default;
  virtual void visit(Visitor& v) = 0;
  // Cross-field rules, run after every field was read and typed (e.g. warmup < total steps).
  virtual void check(Checker& /*c*/) const {}
};

// Type-erased view of a std::vector<T : Section>, so lists of sections need no templates in
// the visitors.
class SectionList {
 public:
  virtual ~SectionList() = default;
  virtual size_t size() const = 0;
  virtual void resize(size_t n) = 0;
  virtual Section& at(size_t i) = 0;
};

template <class T>
class SectionVector final : public SectionList {
 public:
  explicit SectionVector(std::vector<T>& v) : v_(v) {}
  size_t size() const override { return v_.size(); }
  void resize(size_t n) override { v_.resize(n); }
  Section& at(size_t i) override { return v_[i]; }

 private:
  std::vector<T>& v_;
};

class Visitor {
 public:
  virtual ~Visitor() = default;
  virtual void field(const char* key, bool& v, const char* help) = 0;
  virtual void field(const char* key, int64_t& v, const char* help, Range r = {}) = 0;
  virtual void field(const char* key, double& v, const char* help, Range r = {}) = 0;
  virtual void field(const char* key, std::string& v, const char* help,
                     Need need = Need::optional) = 0;
  virtual void field(const char* key, std::vector<int64_t>& v, const char* help, Range r = {}) = 0;
  virtual void field(const char* key, std::vector<double>& v, const char* help, Range r = {}) = 0;
  virtual void field(const char* key, std::vector<std::string>& v, const char* help) = 0;
  // A string restricted to `allowed`.
  virtual void choice(const char* key, std::string& v, const std::vector<std::string>& allowed,
                      const char* help) = 0;
  // A point in training: steps (500), epochs ("2e") or a fraction of the run (0.5).
  virtual void step_point(const char* key, StepPoint& v, const char* help) = 0;
  // A path to an existing file (checked when the config is loaded).
  virtual void file(const char* key, std::string& v, const char* help,
                    Need need = Need::optional) = 0;
  // A path to an existing directory (checked when the config is loaded).
  virtual void directory(const char* key, std::string& v, const char* help,
                         Need need = Need::optional) = 0;
  virtual void section(const char* key, Section& s, const char* help) = 0;
  virtual void list(const char* key, SectionList& items, const char* help) = 0;
  // `name` chosen from the registry `kind`; the chosen entry's own options (if any) are read
  // from the same map, beside `name`.
  virtual void named(const char* key, std::string& name, std::shared_ptr<Section>& options,
                     const char* kind, const char* help, Need need = Need::optional) = 0;

  // An enum restricted to the values of `table`, read and written as their spellings (the
  // errors, dump and docs are those of the string choice above).
  template <class E>
  void choice(const char* key, E& v, const Spellings<E>& table, const char* help) {
    std::vector<std::string> names;
    std::string text = spelling(table, v);
    for (const auto& entry : table) names.emplace_back(entry.second);
    choice(key, text, names, help);
    for (const auto& [e, name] : table)
      if (text == name) v = e;
  }

  template <class T>
  void list(const char* key, std::vector<T>& items, const char* help) {
    SectionVector<T> view(items);
    list(key, view, help);
  }
};

// Reports cross-field errors against a key (relative to the section being checked).
class Checker {
 public:
  virtual ~Checker() = default;
  virtual void error(const std::string& key, const std::string& message) = 0;
};

}  // namespace sculpt::config
