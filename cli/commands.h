// The subcommands of `sculpt`. Each returns the exit code; user mistakes throw UserError.
#pragma once

#include "compression/exports/export.h"

#include <cstdint>
#include <string>
#include <vector>

namespace sculpt::cli {

// `plugins`: the --plugin paths; they and the config's `plugins:` list are loaded before the
// config is read.
int cmd_validate(const std::string& path, const std::vector<std::string>& overrides,
                 const std::vector<std::string>& plugins, bool explain = false);
int cmd_train(const std::string& path, const std::vector<std::string>& overrides,
              const std::vector<std::string>& plugins, const std::string& log_level);
// `quantized`: evaluate the integer model exported by a quantize pass (`quantized_dir`, default
// <run dir>/quantized) instead of float weights. `splits`: the splits to evaluate (train, val,
// test); empty: all three.
int cmd_eval(const std::string& path, const std::vector<std::string>& overrides,
             const std::vector<std::string>& plugins, std::string weights, bool quantized = false,
             std::string quantized_dir = "", bool sparse = false, std::string sparse_dir = "",
             const std::vector<std::string>& splits = {});
int cmd_inspect(const std::string& file);
// `sculpt export RUN --format F`: prints export.json.
int cmd_export(const compression::ExportRequest& request);
struct SensitivityArgs {
  int64_t batches = 8;
  std::string metric;       // empty: trainer.best_metric
  double budget = 0;        // fraction of the FP32 weight bytes; 0: no rules
  std::string rules_file;
};
int cmd_quant_sensitivity(const std::string& path, const std::vector<std::string>& overrides,
                          const std::vector<std::string>& plugins, std::string weights,
                          const SensitivityArgs& args);
int cmd_list(const std::string& kind, const std::vector<std::string>& plugins, bool markdown);

}  // namespace sculpt::cli
