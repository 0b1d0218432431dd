// Registry<Base, Args...>: name -> factory, one per family (models, datasets, tasks,
// optimizers, schedulers, passes, trainers). Built-ins are added by one explicit
// register_builtin_<family>() function each, so no linker can drop them; plugins add theirs
// when loaded. Every registry is listed in one catalog by kind, for `sculpt list` and for the
// config reader, which needs each entry's options section to validate its keys.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/config/section.h"

namespace sculpt {

using OptionsFactory = std::function<std::shared_ptr<config::Section>()>;

class RegistryBase {
 public:
  struct Info {
    std::string name;
    std::string description;  // one line, shown by `sculpt list`
    OptionsFactory options;   // empty when the entry takes no options
  };

  // `kind` is the plural family name ("models"); the registry joins the catalog.
  explicit RegistryBase(std::string kind);
  virtual ~RegistryBase();
  RegistryBase(const RegistryBase&) = delete;
  RegistryBase& operator=(const RegistryBase&) = delete;

  const std::string& kind() const { return kind_; }
  std::vector<Info> entries() const;  // sorted by name
  std::vector<std::string> names() const;
  const Info* find(const std::string& name) const;
  bool contains(const std::string& name) const { return find(name) != nullptr; }
  // Throws UnknownNameError: "unknown <kind> 'x'; did you mean 'y'? known: a, b".
  [[noreturn]] void throw_unknown(const std::string& name) const;
  // The singular noun for messages ("model" for "models").
  std::string noun() const;

 protected:
  void add_info(Info info);  // throws UserError on a duplicate name

 private:
  std::string kind_;
  std::map<std::string, Info> infos_;
};

template <class Base, class... Args>
class Registry : public RegistryBase {
 public:
  using Factory = std::function<std::unique_ptr<Base>(Args...)>;
  using RegistryBase::RegistryBase;

  void add(std::string name, std::string description, Factory factory,
           OptionsFactory options = {}) {
    add_info({name, std::move(description), std::move(options)});
    factories_[std::move(name)] = std::move(factory);
  }

  std::unique_ptr<Base> create(const std::string& name, Args... args) const {
    auto it = factories_.find(name);
    if (it == factories_.end()) throw_unknown(name);
    return it->second(std::forward<Args>(args)...);
  }

 private:
  std::map<std::string, Factory> factories_;
};

// The catalog of every registry alive in this process, by kind.
RegistryBase* find_registry(const std::string& kind);
std::vector<RegistryBase*> all_registries();  // sorted by kind

}  // namespace sculpt
