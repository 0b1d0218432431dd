// docs/config.md documents every key the code accepts (and nothing the code no longer has).
#include <catch2/catch.hpp>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "cli/app.h"
#include "core/config/config.h"
#include "core/config/visitors.h"

TEST_CASE("docs/config.md lists every config key the code accepts", "[docs][config]") {
  sculpt::cli::register_builtins();
  std::ifstream in(SCULPT_SOURCE_DIR "/docs/config.md");
  REQUIRE(in.good());
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string doc = buf.str();

  sculpt::config::Config cfg;
  auto keys = sculpt::config::list_keys(cfg);
  REQUIRE(keys.size() > 20);
  std::set<std::string> code_keys;
  for (const auto& k : keys) {
    code_keys.insert(k.path);
    INFO("key " << k.path << " (" << k.type << ") is missing from docs/config.md");
    CHECK(doc.find("`" + k.path + "`") != std::string::npos);
  }
  // Every documented key (a table row starting with `| `key` |`) still exists in the code.
  std::regex row(R"(\n\| `([a-z_\[\]\.]+)` \|)");
  for (auto it = std::sregex_iterator(doc.begin(), doc.end(), row); it != std::sregex_iterator();
       ++it) {
    std::string key = (*it)[1];
    INFO("docs/config.md documents `" << key << "`, which the code does not accept");
    CHECK(code_keys.count(key) == 1);
  }
}

// docs/architecture.md is the map of record: every file or folder it names in backticks (a path
// with a '/', relative to the repository) exists, and every top-level folder of the code is on
// the map.
TEST_CASE("docs/architecture.md names only paths that exist, and every code folder",
          "[docs]") {
  std::ifstream in(SCULPT_SOURCE_DIR "/docs/architecture.md");
  REQUIRE(in.good());
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string doc = buf.str();
  const std::string root = SCULPT_SOURCE_DIR "/";
  std::regex path(R"(`([a-z_]+/[A-Za-z0-9_./-]*)`)");
  int named = 0;
  for (auto it = std::sregex_iterator(doc.begin(), doc.end(), path); it != std::sregex_iterator();
       ++it) {
    const std::string p = (*it)[1];
    INFO("docs/architecture.md names `" << p << "`, which does not exist");
    CHECK(std::ifstream(root + p).good());  // opens files and folders alike on Linux
    ++named;
  }
  CHECK(named > 30);
  for (const char* folder : {"core/", "distributed/", "kernels/", "trainers/",
                             "trainers/callbacks/", "trainers/strategies/", "compression/",
                             "cli/", "tests/", "bench/", "configs/", "scripts/", "docs/"}) {
    INFO("docs/architecture.md does not place `" << folder << "` on the map");
    CHECK(doc.find(std::string("`") + folder + "`") != std::string::npos);
  }
}
