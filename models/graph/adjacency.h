// Adjacency post-processing shared by the graph-aware attention kinds ("gin", "pna"): the threshold
// modes of the reference code (lamm-mit Graph-Aware-Transformers, process_adjacency_with_modes),
// each followed by a causal re-mask.
#pragma once

#include <string>

#include "core/tensor.h"

namespace gradus::graph {

enum class ThresholdMode { none, relu, sharp_softplus, sigmoid, binary, topk };

// "none" | "relu" | "sharp_softplus" | "sigmoid" | "binary" | "topk"; throws gradus::Error naming
// `key` otherwise.
ThresholdMode parse_threshold_mode(const std::string& key, const std::string& text);
const char* threshold_mode_name(ThresholdMode mode);

struct ThresholdOptions {
  ThresholdMode mode = ThresholdMode::none;
  double tau = 0.2;            // the threshold
  double beta = 10.0;          // sharpness of sharp_softplus and sigmoid
  double topk_fraction = 0.1;  // topk keeps max(1, floor(fraction L)) entries per row
};

// a: (..., L, L) -> (..., L, L). none: a itself. Otherwise
//   relu:           relu(a - tau)
//   sharp_softplus: softplus(beta (a - tau)) / beta
//   sigmoid:        sigmoid(beta (a - tau))
//   binary:         1 where a > tau, else 0 (no gradient: a step)
//   topk:           1 at the k = max(1, floor(fraction L)) largest entries of each row, else 0
//                   (no gradient)
// and then the entries above the diagonal (j > i) are set to 0 again.
Tensor threshold_adjacency(const Tensor& a, const ThresholdOptions& options);

}  // namespace gradus::graph
