#include "core/config/node.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "core/config/errors.h"

namespace fs = std::filesystem;

namespace sculpt::config {

std::string Source::str() const {
  if (!text.empty()) return "command line override '" + text + "'";
  std::string out = file;
  if (line > 0) out += ":" + std::to_string(line) + ":" + std::to_string(column);
  return out;
}

Node* Node::find(const std::string& key) {
  for (auto& kv : map)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

const Node* Node::find(const std::string& key) const {
  return const_cast<Node*>(this)->find(key);
}

const Source* Node::key_source(const std::string& key) const {
  for (size_t i = 0; i < map.size(); ++i)
    if (map[i].first == key) return &key_sources[i];
  return nullptr;
}

void Node::set(const std::string& key, Node value, Source ksrc) {
  kind = Kind::Map;
  for (size_t i = 0; i < map.size(); ++i) {
    if (map[i].first == key) {
      map[i].second = std::move(value);
      key_sources[i] = std::move(ksrc);
      return;
    }
  }
  map.emplace_back(key, std::move(value));
  key_sources.push_back(std::move(ksrc));
}

void Node::erase(const std::string& key) {
  for (size_t i = 0; i < map.size(); ++i) {
    if (map[i].first == key) {
      map.erase(map.begin() + static_cast<std::ptrdiff_t>(i));
      key_sources.erase(key_sources.begin() + static_cast<std::ptrdiff_t>(i));
      return;
    }
  }
}

namespace {

Source at(const YAML::Mark& mark, const Source& origin) {
  Source s = origin;
  if (origin.text.empty() && mark.line >= 0) {
    s.line = origin.line + mark.line + 1;
    s.column = (mark.line == 0 ? origin.column : 0) + mark.column + 1;
  }
  return s;
}

// What one config file may expand to. YAML aliases are references, so a file of a few hundred
// bytes can name 10^9 nodes ("billion laughs"); the conversion stops at these bounds instead.
constexpr size_t kMaxNodes = 20000;  // recipes hold well under 1,000; refusing a bomb stays fast
constexpr size_t kMaxDepth = 64;

struct Budget {
  size_t nodes = 0;
};

Node convert(const YAML::Node& y, const Source& origin, std::vector<Diagnostic>& errors,
             const std::string& path, Budget& budget, size_t depth) {
  Node n;
  n.source = at(y.Mark(), origin);
  if (++budget.nodes > kMaxNodes)
    throw ConfigError({{n.source, path,
                        "the config expands to more than " + std::to_string(kMaxNodes) +
                            " values (nested YAML aliases?); refused"}});
  if (depth > kMaxDepth)
    throw ConfigError({{n.source, path,
                        "nested deeper than " + std::to_string(kMaxDepth) + " levels; refused"}});
  switch (y.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      n.kind = Node::Kind::Null;
      break;
    case YAML::NodeType::Scalar:
      n.kind = Node::Kind::Scalar;
      n.scalar = y.Scalar();
      n.quoted = y.Tag() == "!";
      break;
    case YAML::NodeType::Sequence: {
      n.kind = Node::Kind::Sequence;
      size_t i = 0;
      for (const auto& item : y)
        n.seq.push_back(convert(item, origin, errors, path + "[" + std::to_string(i++) + "]",
                                budget, depth + 1));
      break;
    }
    case YAML::NodeType::Map:
      n.kind = Node::Kind::Map;
      for (const auto& kv : y) {
        Source ks = at(kv.first.Mark(), origin);
        if (!kv.first.IsScalar()) {
          errors.push_back({ks, path, "map keys must be plain names"});
          continue;
        }
        std::string key = kv.first.Scalar();
        std::string child = path.empty() ? key : path;
        if (!path.empty()) child.append(".").append(key);
        if (n.find(key)) {
          errors.push_back(
              {ks, child, "duplicate key (first written at " + n.key_source(key)->str() + ")"});
          continue;
        }
        n.map.emplace_back(key, convert(kv.second, origin, errors, child, budget, depth + 1));
        n.key_sources.push_back(ks);
      }
      break;
  }
  return n;
}

}  // namespace

Node parse_yaml_text(const std::string& text, const Source& origin) {
  YAML::Node y;
  try {
    y = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    Source s = at(e.mark, origin);
    throw ConfigError({{s, "", "malformed YAML: " + e.msg}});
  }
  std::vector<Diagnostic> errors;
  Budget budget;
  Node n = convert(y, origin, errors, "", budget, 0);
  if (!errors.empty()) throw ConfigError(errors);
  return n;
}

// A config file is read only up to this size (a recipe is a few KB; a bigger file is an attack
// or a mistake, and yaml-cpp's nodes take ~100x the text's memory).
constexpr size_t kMaxConfigBytes = 64 << 10;

Node parse_yaml_file(const std::string& path) {
  std::error_code ec;
  if (fs::exists(path, ec) && !fs::is_regular_file(path, ec))  // /dev/zero, a folder, a FIFO
    throw ConfigError({{Source{path, 0, 0, ""}, "", "not a regular file"}});
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError({{Source{path, 0, 0, ""}, "", "cannot open config file"}});
  std::string text;
  char buf[1 << 14];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxConfigBytes)
      throw ConfigError({{Source{path, 0, 0, ""}, "",
                          "larger than " + std::to_string(kMaxConfigBytes) +
                              " bytes, the limit for a config file; refused"}});
  }
  Node n = parse_yaml_text(text, Source{path, 0, 0, ""});
  if (n.kind == Node::Kind::Null) {  // an empty file is an empty config
    n.kind = Node::Kind::Map;
    n.source = Source{path, 1, 1, ""};
  }
  if (!n.is_map())
    throw ConfigError({{n.source, "", "a config file must be a map of sections at the top level"}});
  return n;
}

void merge_into(Node& base, const Node& over) {
  if (base.is_map() && over.is_map()) {
    for (size_t i = 0; i < over.map.size(); ++i) {
      const auto& [key, value] = over.map[i];
      Node* existing = base.find(key);
      if (existing && existing->is_map() && value.is_map()) {
        merge_into(*existing, value);
      } else {
        base.set(key, value, over.key_sources[i]);
      }
    }
    return;
  }
  base = over;
}

namespace {

// `from`: the `extends:` entry that names `path` (null for the file given to load).
Node load_recursive(const std::string& path, std::vector<std::string>& stack,
                    const Source* from = nullptr) {
  std::error_code canon_ec;
  std::string canon = fs::weakly_canonical(fs::path(path), canon_ec).string();
  if (canon_ec) canon = fs::path(path).lexically_normal().string();
  if (auto it = std::find(stack.begin(), stack.end(), canon); it != stack.end()) {
    std::string chain;
    for (; it != stack.end(); ++it) chain += *it + " -> ";
    throw ConfigError({{from ? *from : Source{path, 0, 0, ""}, "extends",
                        "`extends` cycle: " + chain + canon}});
  }
  stack.push_back(canon);
  Node self = parse_yaml_file(path);
  const Node* ext = self.find("extends");
  Node result;
  result.kind = Node::Kind::Map;
  result.source = self.source;
  if (ext) {
    std::vector<const Node*> bases;
    if (ext->kind == Node::Kind::Scalar)
      bases.push_back(ext);
    else if (ext->kind == Node::Kind::Sequence)
      for (const auto& b : ext->seq) bases.push_back(&b);
    std::vector<Diagnostic> errors;
    if (bases.empty() || ext->kind == Node::Kind::Map)
      errors.push_back({ext->source, "extends", "expected a file path or a list of file paths"});
    for (const Node* b : bases) {
      if (b->kind != Node::Kind::Scalar) {
        errors.push_back({b->source, "extends", "expected a file path"});
        continue;
      }
      fs::path p(b->scalar);
      if (p.is_relative()) p = fs::path(path).parent_path() / p;
      if (std::error_code ec; !fs::exists(p, ec)) {  // ec: a name too long, a file as a folder
        errors.push_back({b->source, "extends",
                          (ec ? "cannot read " + p.string() + " (" + ec.message() + ")"
                              : "file not found: " + p.string())});
        continue;
      }
      if (std::error_code ec; !fs::is_regular_file(p, ec)) {  // /dev/zero, a folder, a FIFO
        errors.push_back({b->source, "extends", "not a regular file: " + p.string()});
        continue;
      }
      merge_into(result, load_recursive(p.string(), stack, &b->source));
    }
    if (!errors.empty()) throw ConfigError(errors);
    self.erase("extends");
  }
  merge_into(result, self);
  stack.pop_back();
  return result;
}

struct PathPart {
  std::string key;  // map key, or empty for an index
  long index = -1;
};

}  // namespace

Node load_with_extends(const std::string& path) {
  if (std::error_code ec; !fs::exists(path, ec))
    throw ConfigError({{Source{path, 0, 0, ""}, "", ec ? "cannot read: " + ec.message() : "config file not found"}});
  std::vector<std::string> stack;
  return load_recursive(path, stack);
}

void apply_overrides(Node& root, const std::vector<std::string>& overrides) {
  std::vector<Diagnostic> errors;
  for (const auto& text : overrides) {
    Source src{"<command line>", 0, 0, text};
    auto eq = text.find('=');
    if (eq == std::string::npos || eq == 0) {
      errors.push_back({src, "", "expected key.path=value"});
      continue;
    }
    std::string key = text.substr(0, eq), value = text.substr(eq + 1);
    if (value.empty()) {
      errors.push_back(
          {src, key, "no value after '='; write key.path=value (\"\" for an empty string)"});
      continue;
    }
    // Split a.b[2].c into parts.
    std::vector<PathPart> parts;
    bool ok = true;
    size_t i = 0;
    while (i < key.size() && ok) {
      if (key[i] == '[') {
        size_t close = key.find(']', i);
        std::string num = close == std::string::npos ? "" : key.substr(i + 1, close - i - 1);
        ok = !num.empty() && num.size() <= 9 &&  // an index, not a number stol cannot hold
             num.find_first_not_of("0123456789") == std::string::npos;
        if (ok) parts.push_back({"", std::stol(num)});
        i = close == std::string::npos ? key.size() : close + 1;
        if (i < key.size() && key[i] == '.') ++i;
      } else {
        size_t end = key.find_first_of(".[", i);
        if (end == std::string::npos) end = key.size();
        ok = end > i;
        parts.push_back({key.substr(i, end - i), -1});
        i = (end < key.size() && key[end] == '.') ? end + 1 : end;
      }
    }
    if (!ok || parts.empty() || parts.front().key.empty()) {
      errors.push_back({src, key, "malformed key path"});
      continue;
    }
    Node parsed;
    try {
      parsed = parse_yaml_text(value, src);
    } catch (const ConfigError& e) {
      errors.push_back({src, key, e.diagnostics().front().message});
      continue;
    }
    if (parsed.kind == Node::Kind::Null && value != "null" && value != "~") {
      parsed.kind = Node::Kind::Scalar;  // `key=""` is an empty string
    }
    std::function<void(Node&)> stamp = [&](Node& n) {
      n.source = src;
      for (auto& s : n.key_sources) s = src;
      for (auto& kv : n.map) stamp(kv.second);
      for (auto& s : n.seq) stamp(s);
    };
    stamp(parsed);
    Node* cur = &root;
    std::string walked;
    for (size_t p = 0; p < parts.size() && cur; ++p) {
      bool last = p + 1 == parts.size();
      const PathPart& part = parts[p];
      if (part.index >= 0) {
        if (cur->kind != Node::Kind::Sequence) {
          errors.push_back({src, walked, "is not a list, cannot index it"});
          cur = nullptr;
          break;
        }
        auto idx = static_cast<size_t>(part.index);
        if (idx > cur->seq.size()) {
          errors.push_back({src, walked,
                            "has " + std::to_string(cur->seq.size()) + " entries; index " +
                                std::to_string(idx) + " is out of range"});
          cur = nullptr;
          break;
        }
        if (idx == cur->seq.size()) cur->seq.emplace_back().source = src;
        walked += "[" + std::to_string(idx) + "]";
        if (last) cur->seq[idx] = parsed;
        cur = &cur->seq[idx];
      } else {
        if (cur->kind == Node::Kind::Null) {
          cur->kind = Node::Kind::Map;
          cur->source = src;
        }
        if (!cur->is_map()) {
          errors.push_back({src, walked, "is not a map, cannot set '" + part.key + "' in it"});
          cur = nullptr;
          break;
        }
        walked += (walked.empty() ? "" : ".") + part.key;
        Node* child = cur->find(part.key);
        if (last) {
          // A map merges into the section, except a `model` map naming another model
          // (model={name: hf, path: ...} over a transformer_lm): the old model's sizes and init
          // weights do not apply to the new one, so the map replaces the section.
          auto name_of = [](const Node& n) {
            const Node* v = n.find("name");
            return v && v->kind == Node::Kind::Scalar ? v->scalar : std::string();
          };
          const bool other_model = walked == "model" && parsed.is_map() && child &&
                                   child->is_map() && !name_of(parsed).empty() &&
                                   name_of(parsed) != name_of(*child);
          if (child && child->is_map() && parsed.is_map() && !other_model)
            merge_into(*child, parsed);
          else
            cur->set(part.key, parsed, src);
        } else if (!child) {
          Node fresh;
          fresh.source = src;
          cur->set(part.key, fresh, src);
          child = cur->find(part.key);
        }
        cur = cur->find(part.key);
      }
    }
  }
  if (!errors.empty()) throw ConfigError(errors);
}

}  // namespace sculpt::config
