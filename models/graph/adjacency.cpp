#include "models/graph/adjacency.h"

#include <algorithm>
#include <cmath>

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/graph.h"
#include "autodiff/ops/mask.h"
#include "core/error.h"

namespace gradus::graph {

namespace {
constexpr const char* kNames[] = {"none", "relu", "sharp_softplus", "sigmoid", "binary", "topk"};
}

ThresholdMode parse_threshold_mode(const std::string& key, const std::string& text) {
  for (int m = 0; m < 6; ++m)
    if (text == kNames[m]) return static_cast<ThresholdMode>(m);
  GRADUS_FAIL("ModelConfig",
              "{} must be one of none, relu, sharp_softplus, sigmoid, binary, topk, "
              "found \"{}\"",
              key, text);
}

const char* threshold_mode_name(ThresholdMode mode) { return kNames[static_cast<int>(mode)]; }

Tensor threshold_adjacency(const Tensor& a, const ThresholdOptions& o) {
  GRADUS_CHECK(a.dim() >= 2 && a.size(-1) == a.size(-2), "threshold_adjacency",
               "expected a square adjacency (..., L, L), found {}", a.describe());
  Tensor out;
  switch (o.mode) {
    case ThresholdMode::none: return a;
    case ThresholdMode::relu: out = relu(a - o.tau); break;
    case ThresholdMode::sharp_softplus: out = softplus(a - o.tau, o.beta); break;
    case ThresholdMode::sigmoid: out = sigmoid((a - o.tau) * o.beta); break;
    case ThresholdMode::binary: out = greater_mask(a, o.tau); break;
    case ThresholdMode::topk: {
      const int64_t L = a.size(-1);
      const auto k = std::max<int64_t>(
          1, static_cast<int64_t>(std::floor(o.topk_fraction * static_cast<double>(L))));
      out = topk_mask(a, std::min(k, L));
      break;
    }
  }
  return causal_masked_fill(out, 0.0);
}

}  // namespace gradus::graph
