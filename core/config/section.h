// Typed config sections. Each section is a plain struct with inline defaults and one visit()
// that lists its fields once; that list drives parsing (with validation), the resolved YAML
// dump, the key listing behind docs/config.md, and nothing else looks options up by string.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

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
