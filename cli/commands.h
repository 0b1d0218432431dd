// The subcommands of `sculpt`. Each returns the exit code; user mistakes throw UserError.
#pragma once

#include <string>
#include <vector>

namespace sculpt::cli {

int cmd_validate(const std::string& path, const std::vector<std::string>& overrides,
                 bool explain = false);
int cmd_train(const std::string& path, const std::vector<std::string>& overrides,
              const std::string& log_level);
int cmd_eval(const std::string& path, const std::vector<std::string>& overrides,
             std::string weights);
int cmd_inspect(const std::string& file);
int cmd_list(const std::string& kind, bool markdown);

}  // namespace sculpt::cli
