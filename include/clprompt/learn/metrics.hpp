#pragma once
// Continual-learning metrics over the accuracy matrix a[t][j] = accuracy (%) on task j's test
// set after learning task t (j <= t), as defined in the L2P / DualPrompt / CODA-Prompt papers.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "clprompt/core/error.hpp"

namespace clprompt {

using AccuracyMatrix = std::vector<std::vector<double>>;  ///< row t has t + 1 entries

namespace detail {
inline void check_matrix(const AccuracyMatrix& a) {
  if (a.empty()) throw Error("accuracy matrix is empty: no task has been evaluated");
  for (std::size_t t = 0; t < a.size(); ++t)
    if (a[t].size() != t + 1)
      throw ShapeError(fmt::format("accuracy matrix row {} has {} entries, expected {}", t, a[t].size(), t + 1));
}
}  // namespace detail

/// Mean accuracy over all tasks after the last one: (1/T) sum_j a[T-1][j].
inline double final_average_accuracy(const AccuracyMatrix& a) {
  detail::check_matrix(a);
  const auto& last = a.back();
  double sum = 0;
  for (double v : last) sum += v;
  return sum / static_cast<double>(last.size());
}

/// Task-averaged accuracy after each task t: (1/(t+1)) sum_{j<=t} a[t][j].
inline std::vector<double> average_accuracy_per_task(const AccuracyMatrix& a) {
  detail::check_matrix(a);
  std::vector<double> out;
  for (const auto& row : a) {
    double sum = 0;
    for (double v : row) sum += v;
    out.push_back(sum / static_cast<double>(row.size()));
  }
  return out;
}

/// Average incremental accuracy: the mean over t of the accuracy after task t.
inline double average_incremental_accuracy(const std::vector<double>& accuracy_after_task) {
  if (accuracy_after_task.empty()) throw Error("average incremental accuracy of an empty sequence");
  double sum = 0;
  for (double v : accuracy_after_task) sum += v;
  return sum / static_cast<double>(accuracy_after_task.size());
}

/// Average forgetting: mean over j < T-1 of max_{j <= t < T-1} a[t][j] - a[T-1][j].
/// NaN for a single task (nothing can have been forgotten).
inline double average_forgetting(const AccuracyMatrix& a) {
  detail::check_matrix(a);
  const std::size_t T = a.size();
  if (T < 2) return std::numeric_limits<double>::quiet_NaN();
  double sum = 0;
  for (std::size_t j = 0; j + 1 < T; ++j) {
    double best = -std::numeric_limits<double>::infinity();
    for (std::size_t t = j; t + 1 < T; ++t) best = std::max(best, a[t][j]);
    sum += best - a[T - 1][j];
  }
  return sum / static_cast<double>(T - 1);
}

}  // namespace clprompt
