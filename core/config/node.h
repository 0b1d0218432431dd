// The config tree before typing: YAML files merged through `extends:` and command-line overrides,
// every node remembering the file, line and column it came from (yaml-cpp's nodes forget the
// file, and merging would lose it), so every later error can point at its source.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace sculpt::config {

// Where a value was written: a file position, or a command-line override.
struct Source {
  std::string file;  // config file path, or "<command line>"
  int line = 0;      // 1-based; 0 when unknown
  int column = 0;    // 1-based; 0 when unknown
  std::string text;  // for overrides: the override as typed

  std::string str() const;  // "file:line:col" or "command line override 'a.b=1'"
};

struct Node {
  enum class Kind { Null, Scalar, Map, Sequence };
  Kind kind = Kind::Null;
  std::string scalar;                             // Scalar: text as written
  bool quoted = false;                            // Scalar: written in quotes (always a string)
  std::vector<std::pair<std::string, Node>> map;  // Map: keys in file order
  std::vector<Source> key_sources;                // Map: where each key was written
  std::vector<Node> seq;                          // Sequence
  Source source;                                  // where this value was written

  bool is_map() const { return kind == Kind::Map; }
  Node* find(const std::string& key);
  const Node* find(const std::string& key) const;
  const Source* key_source(const std::string& key) const;
  // Sets map[key] = value (appended if new), recording where the key was written.
  void set(const std::string& key, Node value, Source key_source);
  void erase(const std::string& key);
};

// Parses one YAML file (no `extends:` processing). Throws ConfigError on malformed YAML.
Node parse_yaml_file(const std::string& path);
// Parses YAML text; `origin` names it in errors and sources.
Node parse_yaml_text(const std::string& text, const Source& origin);

// Loads `path`, resolving `extends:` (a path or a list of paths, relative to the file that
// names them; later files and the file itself win; maps merge key by key, lists replace).
Node load_with_extends(const std::string& path);

// Applies `key.path=value` overrides (`a.b[2].c=[1,2]`); creates missing map keys so that the
// typed reader reports them as unknown with the override as their source.
void apply_overrides(Node& root, const std::vector<std::string>& overrides);

// Deep merge: `over` wins; maps merge recursively, everything else replaces.
void merge_into(Node& base, const Node& over);

}  // namespace sculpt::config
