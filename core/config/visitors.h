// The three visitors behind every Section: read (validate) a Node tree, dump resolved YAML,
// list every key with type, default and help (docs/config.md and its test).
#pragma once

#include <string>
#include <vector>

#include "core/config/errors.h"
#include "core/config/node.h"
#include "core/config/section.h"

namespace sculpt::config {

// Reads `node` (a map, or Null for all defaults) into `s`. Appends every problem to `errors`.
// `fallback` locates errors when a key is missing and `node` has no position of its own.
void read_section(const Node& node, Section& s, const Source& fallback,
                  std::vector<Diagnostic>& errors);

// The resolved section as YAML that reads back to the same values.
std::string dump_yaml(Section& s);

struct KeyDoc {
  std::string path;  // compression[].final_sparsity, model.hidden
  std::string type;  // int, float, bool, string, file, one of (a|b), list of int, ...
  std::string default_value;
  std::string help;
  std::string when;  // for options of one registry entry: "model.name = mlp"
};
std::vector<KeyDoc> list_keys(Section& s);

// Shortest decimal text that parses back to exactly `v`.
std::string format_double(double v);

}  // namespace sculpt::config
