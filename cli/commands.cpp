// The subcommands behind `sculpt` (app.cpp parses the command line and maps errors to exit codes).
#include "cli/commands.h"
#include "cli/elastic.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "compression/exports/export.h"
#include "compression/pass.h"
#include "compression/passes/quantize/int8_model.h"
#include "compression/passes/prune/sparse_export.h"
#include "compression/passes/quantize/sensitivity.h"
#include "core/io/atomic_file.h"
#include "compression/plugin.h"
#include "compression/runtimes.h"
#include "core/config/config.h"
#include "core/config/visitors.h"
#include "core/io/safetensors.h"
#include "core/logging/logging.h"
#include "core/registry/registry.h"
#include "core/run/run_context.h"
#include "core/version.h"
#include "distributed/process_group.h"
#include "distributed/world.h"
#include "trainers/run_parts.h"
#include "trainers/trainer.h"

namespace sculpt::cli {

namespace {
// Plugins first: the config reader checks pass options against the registered passes.
config::Config load_config(const std::string& path, const std::vector<std::string>& overrides,
                           const std::vector<std::string>& plugins) {
  compression::load_config_plugins(plugins, path, overrides);
  return config::Config::load(path, overrides);
}
}  // namespace

int cmd_validate(const std::string& path, const std::vector<std::string>& overrides,
                 const std::vector<std::string>& plugins, bool explain) {
  auto cfg = load_config(path, overrides, plugins);
  std::cout << cfg.dump();
  if (explain) std::cout << "\n# plan\n" << compression::explain_recipe(cfg);
  return 0;
}

int cmd_train(const std::string& path, const std::vector<std::string>& overrides,
              const std::vector<std::string>& plugins, const std::string& log_level) {
  auto cfg = load_config(path, overrides, plugins);
  if (log_level.empty()) log::set_level(log::parse_level(cfg.logging.level));
  // Under torchrun, sculpt-run or SLURM: join the process group, then train under DDP.
  auto world = distributed::world_from_env();
  const bool joined = world.source == "torchrun" || world.world_size > 1;
  if (joined && world.world_size > 1)
    log::setup(log::parse_level(log_level.empty() ? cfg.logging.level : log_level), world.rank);
  resume_after_restart(cfg);  // a restarted group (sculpt-run/torchrun) continues the run
  auto trainer = trainers::trainer_registry().create(cfg.trainer.name, cfg.trainer);
  auto ctx = RunContext::create(cfg, world.rank, world.world_size, world.local_rank);
  log::info(version_string(), "; run directory ", ctx.dir().string());
  if (joined) {
    ctx.set_collectives(distributed::connect(world, cfg.distributed, ctx.device()));
    distributed::check_same_config(ctx.collectives(), cfg.hash());
  }
  auto recipe = compression::build_recipe(cfg);
  auto result = trainer->fit(ctx, recipe);
  if (joined) {
    // Every rank waits for the others before exiting: rank 0 hosts the store, which groups of
    // other ranks (pipeline stages of another replica) may still be using.
    auto done = at::zeros({1});
    ctx.collectives().all_reduce(done, ReduceOp::sum, "the end of the run");
  }
  if (result.interrupted) {
    std::cerr << "sculpt: stopped at step " << result.steps << "; continue with: sculpt train "
              << path << " run.resume=auto (and the same overrides)\n";
    return 0;
  }
  std::string line;
  for (const auto& [split, metrics] : result.final_metrics)
    for (const auto& [k, v] : metrics) line += " " + split + "." + k + "=" + std::to_string(v);
  log::info("done: ", result.steps, " steps in ", result.time_s, " s;", line);
  // export: at the end of a finished run, on rank 0, as `sculpt export` would.
  if (world.rank == 0)
    for (const auto& format : cfg.exports.formats) {
      compression::ExportRequest request;
      request.run_dir = ctx.dir().string();
      request.format = format;
      request.force = true;  // a rerun of the same run replaces its export
      request.verify = cfg.exports.verify;
      compression::export_run(request);
    }
  return 0;
}

int cmd_eval(const std::string& path, const std::vector<std::string>& overrides,
             const std::vector<std::string>& plugins, std::string weights, bool quantized,
             std::string quantized_dir, bool sparse, std::string sparse_dir,
             const std::vector<std::string>& splits) {
  auto cfg = load_config(path, overrides, plugins);
  auto device = resolve_device(cfg.run.device);
  std::cout << "{";
  const char* sep = "";
  if (quantized) device = c10::Device(c10::kCPU);  // the integer runtime is a CPU one for now
  auto parts = trainers::build_run_parts(cfg, device);
  if (quantized) {
    if (quantized_dir.empty()) quantized_dir = (RunContext::dir_for(cfg) / "quantized").string();
    const auto manifest = quant::load_quantized(*parts.model, quantized_dir);
    for (const auto& [name, layer] : nn::compressible_layers(*parts.model))
      if (layer->runtime()) log::info("eval: ", name, ": ", layer->runtime()->describe());
    const auto bytes = manifest.at("bytes").get<int64_t>();
    const auto fp32 = manifest.at("fp32_bytes").get<int64_t>();
    std::cout << "\"bytes\": {\"quantized\": " << bytes << ", \"fp32\": " << fp32
              << ", \"ratio\": " << config::format_double(static_cast<double>(bytes) / fp32) << "}";
    sep = ", ";
  } else if (sparse) {
    if (sparse_dir.empty()) sparse_dir = (RunContext::dir_for(cfg) / "sparse").string();
    const auto manifest = compression::prune::load_sparse(*parts.model, sparse_dir);
    const auto bytes = manifest.at("bytes").get<int64_t>();
    const auto fp32 = manifest.at("dense_fp32_bytes").get<int64_t>();
    std::cout << "\"bytes\": {\"sparse\": " << bytes << ", \"fp32\": " << fp32
              << ", \"ratio\": " << config::format_double(static_cast<double>(bytes) / fp32) << "}";
    sep = ", ";
  } else {
    if (weights.empty()) weights = (RunContext::dir_for(cfg) / "model.safetensors").string();
    SCULPT_CHECK(std::filesystem::exists(weights), weights,
                 ": no such weights file (train first, or pass --weights FILE)");
    parts.model->load_state_tensors(io::load_safetensors(weights), weights);
    compression::install_runtimes(cfg, *parts.model);  // e.g. block-sparse layers of prune
  }
  for (const auto& [split, ds] :
       {std::pair<const char*, const data::Dataset*>{"train", &parts.split.train},
        {"val", &parts.split.val},
        {"test", parts.test.get()}}) {
    if (!ds || ds->size() == 0) continue;
    if (!splits.empty() && std::find(splits.begin(), splits.end(), split) == splits.end())
      continue;
    auto m = trainers::evaluate(*parts.model, *parts.task, *ds, cfg.data, device,
                                trainers::use_bf16(cfg.trainer.precision, device));
    std::cout << sep << "\"" << split << "\": {";
    const char* sep2 = "";
    for (const auto& [k, v] : m) {
      std::cout << sep2 << "\"" << k << "\": " << config::format_double(v);
      sep2 = ", ";
    }
    std::cout << "}";
    sep = ", ";
  }
  std::cout << "}\n";
  return 0;
}

int cmd_quant_sensitivity(const std::string& path, const std::vector<std::string>& overrides,
                          const std::vector<std::string>& plugins, std::string weights,
                          const SensitivityArgs& args) {
  auto cfg = load_config(path, overrides, plugins);
  SCULPT_CHECK(args.rules_file.empty() || args.budget > 0,
               "quant-sensitivity: --write-rules needs --budget");
  if (weights.empty()) weights = (RunContext::dir_for(cfg) / "model.safetensors").string();
  SCULPT_CHECK(std::filesystem::exists(weights), weights,
               ": no such weights file (train first, or pass --weights FILE)");
  const auto report =
      compression::measure_quant_sensitivity(cfg, weights, args.batches, args.metric);
  const auto& options = report.options;
  const char* metric = report.metric.c_str();
  std::printf("weights %s, inputs %s; val %s float %.4f\n", options.weight_spec().describe().c_str(),
              options.act_bits ? options.act_spec().describe().c_str() : "float", metric,
              report.baseline);
  std::printf("%-32s %10s %12s %10s\n", "layer", "weights", metric, "drop");
  for (const auto& l : report.layers)
    std::printf("%-32s %10lld %12.4f %10.4f\n", l.name.c_str(), static_cast<long long>(l.weights),
                l.metric, l.drop);
  if (args.budget <= 0) return 0;
  const std::string rules = compression::bit_width_rules(report, args.budget, path);
  std::printf("\n%s", rules.c_str());
  if (!args.rules_file.empty()) {
    io::write_file_atomic(args.rules_file, rules);
    log::info("quant-sensitivity: rules written to ", args.rules_file);
  }
  return 0;
}

int cmd_export(const compression::ExportRequest& request) {
  std::cout << compression::export_run(request).dump(2) << "\n";
  return 0;
}

int cmd_inspect(const std::string& file) {
  auto header = io::read_safetensors_header(file);
  auto tensors = io::load_safetensors(file);
  std::cout << file << "\n";
  for (const auto& [k, v] : header.metadata) std::cout << "  " << k << ": " << v << "\n";
  size_t width = 6;
  for (const auto& e : header.tensors) width = std::max(width, e.name.size());
  char line[512];
  std::snprintf(line, sizeof line, "  %-*s  %-5s %-18s %12s %8s\n", static_cast<int>(width),
                "tensor", "dtype", "shape", "bytes", "zeros");
  std::cout << line;
  int64_t total_bytes = 0, total_numel = 0, total_zeros = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& e = header.tensors[i];
    const auto& t = tensors[i].second;
    int64_t zeros = t.numel() - t.count_nonzero().item<int64_t>();
    std::string shape = "[";
    for (size_t d = 0; d < e.shape.size(); ++d)
      shape += (d ? ", " : "") + std::to_string(e.shape[d]);
    shape += "]";
    std::snprintf(
        line, sizeof line, "  %-*s  %-5s %-18s %12lld %7.2f%%\n", static_cast<int>(width),
        e.name.c_str(), e.dtype.c_str(), shape.c_str(), static_cast<long long>(e.end - e.begin),
        t.numel() ? 100.0 * static_cast<double>(zeros) / static_cast<double>(t.numel()) : 0.0);
    std::cout << line;
    total_bytes += e.end - e.begin;
    total_numel += t.numel();
    total_zeros += zeros;
  }
  std::cout << "  total: " << tensors.size() << " tensors, " << total_numel << " values, "
            << total_bytes << " bytes, "
            << (total_numel
                    ? 100.0 * static_cast<double>(total_zeros) / static_cast<double>(total_numel)
                    : 0.0)
            << "% zeros\n";
  return 0;
}

int cmd_list(const std::string& kind, const std::vector<std::string>& plugins, bool markdown) {
  compression::load_config_plugins(plugins, "", {});
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
    for (const auto& e : entries) {
      std::cout << "  " << e.name << std::string(width + 2 - e.name.size(), ' ') << e.description
                << "\n";
      if (!e.options) continue;
      auto options = e.options();  // the entry's own keys, beside `name`
      for (const auto& k : config::list_keys(*options))
        std::cout << "      " << k.path << " (" << k.type
                  << (k.default_value.empty() ? "" : ", default " + k.default_value) << ")  "
                  << k.help << "\n";
    }
  }
  return 0;
}

}  // namespace sculpt::cli
