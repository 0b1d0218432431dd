#include "core/registry/registry.h"

#include <algorithm>
#include <mutex>

#include "core/config/errors.h"
#include "core/error.h"

namespace sculpt {

namespace {
std::map<std::string, RegistryBase*>& catalog() {
  static std::map<std::string, RegistryBase*> registries;
  return registries;
}
std::mutex& catalog_mutex() {
  static std::mutex m;
  return m;
}
}  // namespace

RegistryBase::RegistryBase(std::string kind) : kind_(std::move(kind)) {
  std::lock_guard<std::mutex> lock(catalog_mutex());
  SCULPT_ASSERT(!catalog().count(kind_), "two registries of kind ", kind_);
  catalog()[kind_] = this;
}

RegistryBase::~RegistryBase() {
  std::lock_guard<std::mutex> lock(catalog_mutex());
  catalog().erase(kind_);
}

std::vector<RegistryBase::Info> RegistryBase::entries() const {
  std::vector<Info> out;
  for (const auto& kv : infos_) out.push_back(kv.second);
  return out;
}

std::vector<std::string> RegistryBase::names() const {
  std::vector<std::string> out;
  for (const auto& kv : infos_) out.push_back(kv.first);
  return out;
}

const RegistryBase::Info* RegistryBase::find(const std::string& name) const {
  auto it = infos_.find(name);
  return it == infos_.end() ? nullptr : &it->second;
}

std::string RegistryBase::noun() const {
  auto ends_with = [&](const std::string& end) {
    return kind_.size() > end.size() &&
           kind_.compare(kind_.size() - end.size(), end.size(), end) == 0;
  };
  if (ends_with("sses")) return kind_.substr(0, kind_.size() - 2);  // passes -> pass
  if (ends_with("s")) return kind_.substr(0, kind_.size() - 1);
  return kind_;
}

void RegistryBase::throw_unknown(const std::string& name) const {
  std::string msg = "unknown " + noun() + " '" + name + "'";
  auto known = names();
  std::string guess = config::closest_match(name, known);
  if (!guess.empty()) msg += "; did you mean '" + guess + "'?";
  msg += known.empty() ? " (no " + kind_ + " are registered)" : "; known " + kind_ + ": ";
  for (size_t i = 0; i < known.size(); ++i) msg += (i ? ", " : "") + known[i];
  throw UnknownNameError(msg);
}

void RegistryBase::add_info(Info info) {
  SCULPT_CHECK(!infos_.count(info.name), noun(), " '", info.name, "' is already registered");
  std::string key = info.name;
  infos_.emplace(std::move(key), std::move(info));
}

RegistryBase* find_registry(const std::string& kind) {
  std::lock_guard<std::mutex> lock(catalog_mutex());
  auto it = catalog().find(kind);
  return it == catalog().end() ? nullptr : it->second;
}

std::vector<RegistryBase*> all_registries() {
  std::lock_guard<std::mutex> lock(catalog_mutex());
  std::vector<RegistryBase*> out;
  for (const auto& kv : catalog()) out.push_back(kv.second);
  return out;
}

}  // namespace sculpt
