#include <CLI/CLI.hpp>

#include <iostream>

#include "cli/app.h"
#include "core/config/config.h"
#include "core/config/errors.h"
#include "core/config/visitors.h"
#include "core/logging/logging.h"
#include "core/registry/registry.h"
#include "core/run/run_context.h"
#include "core/version.h"
#include "distributed/world.h"
#include "trainers/trainer.h"

namespace sculpt::cli {

namespace {

int cmd_validate(const std::string& path, const std::vector<std::string>& overrides) {
  auto cfg = config::Config::load(path, overrides);
  std::cout << cfg.dump();
  return 0;
}

int cmd_train(const std::string& path, const std::vector<std::string>& overrides,
              const std::string& log_level) {
  auto cfg = config::Config::load(path, overrides);
  if (log_level.empty()) log::set_level(log::parse_level(cfg.logging.level));
  auto world = distributed::world_from_env();
  SCULPT_CHECK(world.world_size == 1, world.source, " asks for ", world.world_size,
               " processes, but multi-process training is not built yet; run one process");
  auto trainer = trainers::trainer_registry().create(cfg.trainer.name, cfg.trainer);
  auto ctx = RunContext::create(cfg, world.rank, world.world_size);
  log::info(version_string(), "; run directory ", ctx.dir().string());
  auto result = trainer->fit(ctx);
  std::string line;
  for (const auto& [split, metrics] : result.final_metrics)
    for (const auto& [k, v] : metrics) line += " " + split + "." + k + "=" + std::to_string(v);
  log::info("done: ", result.steps, " steps in ", result.time_s, " s;", line);
  return 0;
}

int cmd_list(const std::string& kind, bool markdown) {
  if (kind == "keys") {
    config::Config cfg;
    if (markdown) std::cout << "| key | type | default | meaning |\n|---|---|---|---|\n";
    for (const auto& k : config::list_keys(cfg)) {
      if (markdown) {
        std::string def = k.default_value.empty() ? "" : "`" + k.default_value + "`";
        std::string when = k.when.empty() ? "" : " (when `" + k.when + "`)";
        std::cout << "| `" << k.path << "` | " << k.type << " | " << def << " | " << k.help << when
                  << " |\n";
      } else {
        std::cout << k.path << "  (" << k.type << (k.default_value.empty() ? "" : ", default ")
                  << k.default_value << ")" << (k.when.empty() ? "" : "  when " + k.when) << "  "
                  << k.help << "\n";
      }
    }
    return 0;
  }
  auto registries = all_registries();
  if (!kind.empty()) {
    RegistryBase* reg = find_registry(kind);
    if (!reg) {
      std::string known;
      for (auto* r : registries) known += " " + r->kind();
      throw UserError("unknown kind '" + kind + "'; known kinds:" + known + " keys");
    }
    registries = {reg};
  }
  for (auto* reg : registries) {
    std::cout << reg->kind() << ":\n";
    auto entries = reg->entries();
    if (entries.empty()) std::cout << "  (none registered)\n";
    size_t width = 0;
    for (const auto& e : entries) width = std::max(width, e.name.size());
    for (const auto& e : entries)
      std::cout << "  " << e.name << std::string(width + 2 - e.name.size(), ' ') << e.description
                << "\n";
  }
  return 0;
}

}  // namespace

int run_sculpt(int argc, char** argv) {
  CLI::App app{"Sculpt: train and compress models from a YAML file", "sculpt"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(version_string()));
  std::string log_level;
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|off (wins over logging.level)");

  std::string config_path;
  std::vector<std::string> overrides;
  auto* validate = app.add_subcommand("validate", "load and check a config, print it resolved; nothing else");
  validate->add_option("config", config_path, "YAML run config")->required();
  validate->add_option("overrides", overrides, "key.path=value overrides");

  auto* train = app.add_subcommand("train", "train (and compress) a model from a YAML config");
  train->add_option("config", config_path, "YAML run config")->required();
  train->add_option("overrides", overrides, "key.path=value overrides");

  std::string kind;
  auto* list = app.add_subcommand("list", "list registered models, datasets, passes... (or `keys`)");
  bool markdown = false;
  list->add_flag("--markdown", markdown, "with `keys`: print the docs/config.md table");
  list->add_option("kind", kind, "one kind: models, datasets, tasks, optimizers, schedulers, trainers, passes, keys");

  try {
    register_builtins();
    app.parse(argc, argv);
    if (!log_level.empty()) log::set_level(log::parse_level(log_level));
    if (*validate) return cmd_validate(config_path, overrides);
    if (*list) return cmd_list(kind, markdown);
    if (*train) return cmd_train(config_path, overrides, log_level);
    return 2;
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e) == 0 ? 0 : 2;
  } catch (const CLI::CallForVersion& e) {
    app.exit(e);
    return 0;
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  } catch (const UserError& e) {
    std::cerr << "sculpt: error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "sculpt: failed: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace sculpt::cli
