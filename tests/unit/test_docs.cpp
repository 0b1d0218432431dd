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
