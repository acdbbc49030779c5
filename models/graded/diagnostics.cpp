#include "models/graded/diagnostics.h"

#include <algorithm>
#include <numeric>

#include "models/graded/grading.h"

namespace gradus::graded {

nlohmann::json grading_report(const Module& model, bool full) {
  nlohmann::json out;
  for (const auto& [path, g] : find_gradings(model)) {
    const std::vector<double> q = g->grade_values();
    auto [lo, hi] = std::minmax_element(q.begin(), q.end());
    nlohmann::json entry = {
        {"kappa", g->kappa()},
        {"lambda", g->base_value()},
        {"s_max", g->s_max()},
        {"q_min", *lo},
        {"q_mean", std::accumulate(q.begin(), q.end(), 0.0) / static_cast<double>(q.size())},
        {"q_max", *hi}};
    if (full) {
      nlohmann::json rows = nlohmann::json::array();
      for (int64_t r = 0; r < g->rows(); ++r)
        rows.push_back(
            std::vector<double>(q.begin() + r * g->dim(), q.begin() + (r + 1) * g->dim()));
      entry["q"] = rows;
    }
    out[path] = entry;
  }
  return out;
}

}  // namespace gradus::graded
