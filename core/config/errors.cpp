#include "core/config/errors.h"

#include <algorithm>

namespace sculpt::config {

std::string Diagnostic::str() const {
  std::string out = source.str() + ": ";
  if (!path.empty()) out += path + ": ";
  return out + message;
}

namespace {
std::string join_diagnostics(const std::vector<Diagnostic>& ds) {
  std::string out;
  for (size_t i = 0; i < ds.size(); ++i) out += (i ? "\n" : "") + ds[i].str();
  return out;
}
}  // namespace

ConfigError::ConfigError(std::vector<Diagnostic> diagnostics)
    : UserError(join_diagnostics(diagnostics)), diagnostics_(std::move(diagnostics)) {}

int edit_distance(const std::string& a, const std::string& b) {
  std::vector<int> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = static_cast<int>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = static_cast<int>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      int sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  int best_d = std::max<int>(2, static_cast<int>(word.size()) / 3) + 1;
  for (const auto& c : candidates) {
    int d = edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

}  // namespace sculpt::config
