#include "cli/versions.h"

#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "core/error.h"
#include "trainers/versions.h"
#include "trainers/versions_ab.h"

namespace sculpt::cli {

namespace {
int64_t version_id(const std::string& s) {
  std::string t = s;
  if (!t.empty() && (t[0] == 'v' || t[0] == 'V')) t = t.substr(1);
  char* end = nullptr;
  const long long v = std::strtoll(t.c_str(), &end, 10);
  SCULPT_CHECK(!t.empty() && end && *end == '\0' && v > 0, "versions: '", s,
               "' is not a version id (a number, e.g. 2 or v2)");
  return v;
}
}  // namespace

int cmd_versions(const VersionsArgs& a) {
  namespace v = trainers::versions;
  v::Store store(a.dir);
  auto need = [&](size_t n, const char* usage) {
    SCULPT_CHECK(a.args.size() == n, "versions ", a.action, ": usage: sculpt versions DIR ", usage);
  };
  if (a.action != "add")
    SCULPT_CHECK(std::filesystem::is_directory(a.dir), a.dir, ": no such version store");
  SCULPT_CHECK(a.action == "diff" || (!a.no_eval && !a.json && a.latency_queries == 16 &&
                                      a.rounds == 5),
               "versions ", a.action, ": --no-eval, --json, --latency-queries and --rounds are "
               "options of diff");
  if (a.action == "list") {
    need(0, "list");
    std::cout << v::list_text(store);
  } else if (a.action == "show") {
    need(1, "show V");
    std::cout << v::show_text(store, version_id(a.args[0]));
  } else if (a.action == "diff") {
    need(2, "diff A B [--no-eval] [--json] [--latency-queries N] [--rounds R]");
    const auto x = version_id(a.args[0]), y = version_id(a.args[1]);
    auto report = v::diff_json(store, x, y);
    if (!a.no_eval) report["ab"] = v::ab_report(store, x, y, {a.latency_queries, a.rounds});
    std::cout << (a.json ? report.dump(2) + "\n" : v::diff_text(report));
  } else if (a.action == "rollback") {
    need(1, "rollback V [--out RUN_DIR]");
    const auto id = version_id(a.args[0]);
    const auto out = v::rollback(store, id, a.out);
    std::cout << "version " << id << " is current; its weights are in " << out
              << "/model.safetensors\n  sculpt eval " << out << "/config.yaml --weights " << out
              << "/model.safetensors\n  sculpt train NEXT.yaml model.init=" << out << "\n";
  } else if (a.action == "add") {
    need(1, "add RUN_DIR");
    const auto id = v::add_run(store, a.args[0]);
    std::cout << "version " << id << " added to " << a.dir << "\n";
  } else {
    throw UserError("versions: unknown action '" + a.action +
                    "' (list, show V, diff A B, rollback V, add RUN)");
  }
  return 0;
}

}  // namespace sculpt::cli
