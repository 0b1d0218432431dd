// Continual-learning metrics of an accuracy matrix (GEM, Lopez-Paz & Ranzato 2017; forgetting
// after Chaudhry et al. 2018). R[i][j] is the accuracy on increment j after training increments
// 0..i; entries not measured are NaN (the trainer measures j <= i + 1: every increment seen and
// the next one, for FWT). b[j] is the accuracy of the initial model on increment j.
#pragma once

#include <nlohmann/json.hpp>
#include <vector>

namespace sculpt::trainers {

using AccuracyMatrix = std::vector<std::vector<double>>;

// After the first t + 1 rows (t = rows - 1):
//   average_accuracy      = mean_{j<=t} R[t][j]
//   bwt                   = mean_{j<t} (R[t][j] - R[j][j])                  (t >= 1)
//   fwt                   = mean_{1<=j<=t} (R[j-1][j] - b[j])               (t >= 1)
//   forgetting            = mean_{j<t} (R[j][j] - R[t][j])   from the accuracy right after j
//   forgetting_from_best  = mean_{j<t} (max_{l<t} R[l][j] - R[t][j])  from the best past value
// Keys whose terms are missing are left out.
nlohmann::json continual_metrics(const AccuracyMatrix& r, const std::vector<double>& baseline);

// The matrix as JSON rows of `columns` entries, null where not measured.
nlohmann::json matrix_json(const AccuracyMatrix& r, size_t columns);
AccuracyMatrix matrix_from_json(const nlohmann::json& j);

}  // namespace sculpt::trainers
