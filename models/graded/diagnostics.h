// What a graded model logs while it trains: per grading operator (embedding, each layer's
// attention and feed-forward input) the grades, lambda and the condition number
// kappa = s_max / s_min of the Phi applied.
#pragma once

#include <nlohmann/json.hpp>

#include "models/nn/module.h"

namespace gradus::graded {

// {"<dotted path of the operator>": {"kappa", "lambda", "s_max", "q_min", "q_mean", "q_max"
//   [, "q": [[row 0], [row 1], ...] when full]}, ...}; null when the model has no grading (an
// ungraded or a folded model).
nlohmann::json grading_report(const Module& model, bool full);

}  // namespace gradus::graded
