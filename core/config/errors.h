// ConfigError: every problem found in one config, each with its source and key path, collected
// and thrown together so a user fixes them in one pass.
#pragma once

#include <string>
#include <vector>

#include "core/config/node.h"
#include "core/error.h"

namespace sculpt::config {

struct Diagnostic {
  Source source;     // where the offending value (or its parent, for a missing key) was written
  std::string path;  // key path, e.g. compression[2].schedule.final_sparsity
  std::string message;

  // "file:line:col: path: message"
  std::string str() const;
};

class ConfigError : public UserError {
 public:
  explicit ConfigError(std::vector<Diagnostic> diagnostics);
  const std::vector<Diagnostic>& diagnostics() const { return diagnostics_; }

 private:
  std::vector<Diagnostic> diagnostics_;
};

// Levenshtein distance, for "did you mean".
int edit_distance(const std::string& a, const std::string& b);
// The closest candidate within a distance that scales with the word, or "" when none is close.
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace sculpt::config
