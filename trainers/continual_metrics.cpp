#include "trainers/continual_metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace sculpt::trainers {

namespace {
double at(const AccuracyMatrix& r, size_t i, size_t j) {
  return i < r.size() && j < r[i].size() ? r[i][j] : std::numeric_limits<double>::quiet_NaN();
}

// Mean of the finite values; NaN when there is none.
struct Mean {
  double sum = 0;
  int64_t n = 0;
  void add(double v) {
    if (std::isfinite(v)) sum += v, ++n;
  }
  void put(nlohmann::json& j, const char* key) const {
    if (n > 0) j[key] = sum / static_cast<double>(n);
  }
};
}  // namespace

nlohmann::json continual_metrics(const AccuracyMatrix& r, const std::vector<double>& baseline) {
  nlohmann::json out = nlohmann::json::object();
  if (r.empty()) return out;
  const size_t t = r.size() - 1;
  Mean acc, bwt, fwt, forget, forget_best;
  for (size_t j = 0; j <= t; ++j) acc.add(at(r, t, j));
  for (size_t j = 0; j < t; ++j) {
    bwt.add(at(r, t, j) - at(r, j, j));
    forget.add(at(r, j, j) - at(r, t, j));
    double best = -std::numeric_limits<double>::infinity();
    for (size_t l = 0; l < t; ++l)
      if (std::isfinite(at(r, l, j))) best = std::max(best, at(r, l, j));
    forget_best.add(best - at(r, t, j));
  }
  for (size_t j = 1; j <= t; ++j)
    fwt.add(at(r, j - 1, j) - (j < baseline.size() ? baseline[j] : NAN));
  acc.put(out, "average_accuracy");
  bwt.put(out, "bwt");
  fwt.put(out, "fwt");
  forget.put(out, "forgetting");
  forget_best.put(out, "forgetting_from_best");
  return out;
}

nlohmann::json matrix_json(const AccuracyMatrix& r, size_t columns) {
  nlohmann::json rows = nlohmann::json::array();
  for (size_t i = 0; i < r.size(); ++i) {
    nlohmann::json row = nlohmann::json::array();
    for (size_t j = 0; j < columns; ++j) {
      const double v = at(r, i, j);
      row.push_back(std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr));
    }
    rows.push_back(row);
  }
  return rows;
}

AccuracyMatrix matrix_from_json(const nlohmann::json& j) {
  AccuracyMatrix r;
  for (const auto& row : j) {
    r.emplace_back();
    for (const auto& v : row)
      r.back().push_back(v.is_number() ? v.get<double>() : std::numeric_limits<double>::quiet_NaN());
  }
  return r;
}

}  // namespace sculpt::trainers
