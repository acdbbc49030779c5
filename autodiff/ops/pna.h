// Streaming PNA aggregation (kernels/pna.h): the moments of v over the causal soft adjacency that
// the scores scale q k^T define, in one op that keeps neither the (T, T) scores nor the adjacency
// for its backward. PNA-Attention (models/graph/pna_attention.h) runs it in place of its composite
// (matmul, relu / softmax, threshold, matmul, neighbour_max), which keeps several (B, H, T, T)
// tensors per layer.
#pragma once

#include "core/tensor.h"
#include "kernels/pna.h"

namespace gradus {

struct PnaMomentsOptions {
  kernels::PnaAdjacency adjacency = kernels::PnaAdjacency::relu;  // a = relu(s) or softmax(s)
  kernels::PnaThreshold threshold = kernels::PnaThreshold::none;  // a' = threshold(a)
  double scale = 1.0;                                             // s = scale q k^T
  double tau = 0.2, beta = 10.0;
  bool with_square = false, with_max = false, with_min = false;  // the optional moments
};

// q, k, v: (B, H, T, D), one device, one float dtype -> moments: (B, H, T, W) in f64 for f64 and
// f32 otherwise, the blocks [sum | square | max | min | degree] of kernels/pna.h (the optional ones
// only when asked for), W = D (1 + #optional) + 1. Differentiable in q, k and v (max and min in v
// only). Under autocast, q, k and v run in the compute dtype.
Tensor pna_moments(const Tensor& q, const Tensor& k, const Tensor& v,
                   const PnaMomentsOptions& options);

// The blocks of pna_moments' result as differentiable views: sum, square, max, min (D channels;
// undefined when not asked for) and degree (1 channel, sum_j a'_ij, zeros not yet replaced).
struct PnaMomentBlocks {
  Tensor sum, square, max, min, degree;
};
PnaMomentBlocks split_pna_moments(const Tensor& moments, const PnaMomentsOptions& options);

}  // namespace gradus
