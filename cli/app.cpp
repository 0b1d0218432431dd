// `sculpt`: command-line parsing (CLI11) and the one place that turns errors into exit codes.
#include <CLI/CLI.hpp>

#include <iostream>

#include "cli/app.h"
#include "cli/commands.h"
#include "cli/elastic.h"
#include "cli/tokenize.h"
#include "cli/versions.h"
#include "core/config/errors.h"
#include "core/error.h"
#include "core/logging/logging.h"
#include "core/run/run_context.h"
#include "core/version.h"

namespace sculpt::cli {

namespace {
// The first word of the command line that is not an option (nor an option's value) when it
// names no subcommand of `app`, e.g. "trian"; "" otherwise.
std::string unknown_subcommand(CLI::App& app, int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("-", 0) == 0) {
      if ((a == "--log-level" || a == "--plugin") && i + 1 < argc) ++i;
      continue;
    }
    for (const auto* sub : app.get_subcommands([](CLI::App*) { return true; }))
      if (sub->check_name(a)) return "";
    return a;
  }
  return "";
}
}  // namespace

int run_sculpt(int argc, char** argv) {
  CLI::App app{"Sculpt: train and compress models from a YAML file", "sculpt"};
  app.require_subcommand(1);
  app.fallthrough();  // --log-level works before or after the subcommand
  app.set_version_flag("--version", std::string(version_string()) + "\n" + cuda_status());
  std::string log_level;
  app.add_option("--log-level", log_level,
                 "trace|debug|info|warn|error|off (wins over logging.level)");

  std::string config_path;
  std::vector<std::string> overrides;
  std::vector<std::string> plugins;
  auto add_plugin_option = [&plugins](CLI::App* sub) {
    sub->add_option("--plugin", plugins,
                    "shared library with more passes (repeatable); loaded with the config's "
                    "`plugins:` before the config is read")
        ->allow_extra_args(false);  // one path per --plugin: later words stay overrides
  };
  auto* validate =
      app.add_subcommand("validate", "load and check a config, print it resolved; nothing else");
  validate->add_option("config", config_path, "YAML run config")->required();
  validate->add_option("overrides", overrides, "key.path=value overrides");
  bool explain = false;
  validate->add_flag("--explain", explain,
                     "also print the recipe's per-layer plan: which pass touches which layer, "
                     "with what settings");
  add_plugin_option(validate);

  auto* train = app.add_subcommand("train", "train (and compress) a model from a YAML config");
  train->add_option("config", config_path, "YAML run config")->required();
  train->add_option("overrides", overrides, "key.path=value overrides");
  std::string resume;
  train->add_option("--resume", resume,
                    "same as run.resume=VALUE: auto, or a checkpoint/run folder");
  add_plugin_option(train);

  std::string weights;
  auto* eval = app.add_subcommand("eval", "evaluate trained weights on the config's data");
  eval->add_option("config", config_path, "YAML run config")->required();
  eval->add_option("overrides", overrides, "key.path=value overrides");
  eval->add_option("--weights", weights,
                   "safetensors weights (default: <run dir>/model.safetensors)");
  std::string quantized_dir;
  auto* quantized = eval->add_option("--quantized", quantized_dir,
                                     "evaluate the integer model a quantize pass exported "
                                     "(default folder: <run dir>/quantized)")
                        ->expected(0, 1);
  std::vector<std::string> eval_splits;
  eval->add_option("--split", eval_splits, "evaluate only this split (repeatable; default: all)")
      ->check(CLI::IsMember({"train", "val", "test"}));
  std::string sparse_dir;
  auto* sparse = eval->add_option("--sparse", sparse_dir,
                                  "evaluate the sparse model a prune pass exported (BSR and "
                                  "bitmask layers; default folder: <run dir>/sparse)")
                     ->expected(0, 1);
  quantized->excludes(sparse);
  add_plugin_option(eval);

  compression::ExportRequest export_req;
  auto* exp = app.add_subcommand(
      "export", "write a run's model in a layout another runtime loads, then check its outputs");
  exp->add_option("run", export_req.run_dir, "the run folder (config.yaml, model.safetensors)")
      ->required();
  exp->add_option("--format", export_req.format,
                  "hf (the Hugging Face layout) or compressed-tensors (its int8 / packed 4-bit "
                  "weights, for transformers and vLLM)")
      ->required();
  exp->add_option("--out", export_req.out, "output folder (default: <run>/export-<format>)");
  exp->add_flag("--force", export_req.force, "replace an existing output folder");
  bool no_verify = false;
  exp->add_flag("--no-verify", no_verify, "skip reading the export back and comparing outputs");

  std::string file;
  auto* inspect = app.add_subcommand("inspect", "print what a weights/checkpoint file holds");
  inspect->add_option("file", file, "a .safetensors file")->required();

  SensitivityArgs sens;
  auto* qs = app.add_subcommand(
      "quant-sensitivity",
      "quantize one layer at a time (PTQ) and report the validation metric drop per layer; "
      "optionally write the 8-bit rules that meet a size budget");
  qs->add_option("config", config_path, "YAML run config (its quantize item sets the bits)")
      ->required();
  qs->add_option("overrides", overrides, "key.path=value overrides");
  qs->add_option("--weights", weights, "safetensors weights (default: <run dir>/model.safetensors)");
  qs->add_option("--batches", sens.batches, "calibration batches per layer")
      ->check(CLI::PositiveNumber);
  qs->add_option("--metric", sens.metric, "validation metric (default: trainer.best_metric)");
  qs->add_option("--budget", sens.budget,
                 "weight-size budget as a fraction of the FP32 weight bytes (e.g. 0.15)")
      ->check(CLI::Range(0.0, 1.0));
  qs->add_option("--write-rules", sens.rules_file,
                 "with --budget: write the overrides (8-bit layers) to this YAML file");
  add_plugin_option(qs);

  std::string kind;
  auto* list =
      app.add_subcommand("list", "list registered models, datasets, passes... (or `keys`)");
  bool markdown = false;
  list->add_flag("--markdown", markdown, "with `keys`: print the docs/config.md table");
  list->add_option(
      "kind", kind,
      "one kind: models, datasets, tasks, optimizers, schedulers, trainers, passes, keys");
  add_plugin_option(list);

  TokenizeArgs tok_args;
  auto* tokenize = app.add_subcommand(
      "tokenize", "print the ids a tokenizer gives each line of a text file (or --stats)");
  tokenize->add_option("file", tok_args.file, "UTF-8 text, one example per line")->required();
  tokenize->add_option("--tokenizer", tok_args.tokenizer,
                       "checkpoint directory, tokenizer.json or SentencePiece .model")
      ->required();
  tokenize->add_flag("--stats", tok_args.stats, "print tokens, tokens/line and the unknown rate");
  tokenize->add_option("--max-length", tok_args.max_length, "truncate each line to N ids")
      ->check(CLI::NonNegativeNumber);
  tokenize->add_flag("--no-special", tok_args.no_special, "without the special tokens");
  tokenize->add_option("--threads", tok_args.threads, "encoding threads (0: all cores)")
      ->check(CLI::NonNegativeNumber);

  VersionsArgs ver_args;
  auto* versions = app.add_subcommand(
      "versions", "model versions of incremental runs: list, show V, diff A B, rollback V, add RUN");
  versions->add_option("dir", ver_args.dir, "the version store (e.g. <run>/versions)")->required();
  versions->add_option("action", ver_args.action, "list | show | diff | rollback | add")
      ->required();
  versions->add_option("args", ver_args.args, "V, A B, or RUN");
  versions->add_option("--out", ver_args.out,
                       "rollback: the run directory to write (default <store>/rollback/v<V>)");
  versions->add_flag("--no-eval", ver_args.no_eval,
                     "diff: only what the versions recorded (no rebuilt A/B evaluation)");
  versions->add_flag("--json", ver_args.json, "diff: the report as JSON");
  versions->add_option("--latency-queries", ver_args.latency_queries,
                       "diff: batch-1 queries timed per round (0: no latency)")
      ->check(CLI::NonNegativeNumber);
  versions->add_option("--rounds", ver_args.rounds,
                       "diff: latency rounds, alternating A and B (median reported)")
      ->check(CLI::PositiveNumber);

  try {
    register_builtins();
    app.parse(argc, argv);
    if (!log_level.empty()) log::set_level(log::parse_level(log_level));
    if (*validate) return cmd_validate(config_path, overrides, plugins, explain);
    if (*list) return cmd_list(kind, plugins, markdown);
    if (!resume.empty()) overrides.push_back("run.resume=" + resume);
    if (*train) return cmd_train(config_path, overrides, plugins, log_level);
    if (*eval)
      return cmd_eval(config_path, overrides, plugins, weights, quantized->count() > 0,
                      quantized_dir, sparse->count() > 0, sparse_dir, eval_splits);
    if (*inspect) return cmd_inspect(file);
    if (*exp) {
      export_req.verify = !no_verify;
      return cmd_export(export_req);
    }
    if (*tokenize) return cmd_tokenize(tok_args);
    if (*versions) return cmd_versions(ver_args);
    if (*qs) return cmd_quant_sensitivity(config_path, overrides, plugins, weights, sens);
    return 2;
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e) == 0 ? 0 : 2;
  } catch (const CLI::CallForVersion& e) {
    app.exit(e);
    return 0;
  } catch (const CLI::ParseError& e) {
    if (const auto word = unknown_subcommand(app, argc, argv); !word.empty()) {
      std::vector<std::string> names;
      for (const auto* sub : app.get_subcommands([](CLI::App*) { return true; }))
        names.push_back(sub->get_name());
      const auto guess = config::closest_match(word, names);
      std::string known;
      for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
      std::cerr << "sculpt: error: unknown subcommand '" << word << "'"
                << (guess.empty() ? "" : "; did you mean '" + guess + "'?")
                << " (subcommands: " << known << ")\n";
      return 2;
    }
    app.exit(e);
    return 2;
  } catch (const UserError& e) {
    std::cerr << "sculpt: error: " << e.what() << "\n";
    write_elastic_error("UserError", e.what());  // for sculpt-run/torchrun, when set
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "sculpt: failed: " << e.what() << "\n";
    write_elastic_error("Error", e.what());
    return 1;
  }
}

}  // namespace sculpt::cli
