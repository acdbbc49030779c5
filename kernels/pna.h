// Streaming PNA aggregation (PNA-Attention, models/graph/pna_attention.h): the moments of the
// values over the soft adjacency that the attention scores define, forward and backward, without
// the (T, T) scores or adjacency in memory. The composite (matmul, relu or softmax, threshold,
// matmul, neighbour_max) keeps several (B, H, T, T) tensors per layer for its backward; this keeps
// the (B, H, T, W) moments, the extrema's arg indices and, for the softmax adjacency, a per-row
// log-sum-exp, and rebuilds the adjacency from q and k in the backward.
//
// Per (b, h), causal (queries and keys are the same T positions; key j is visible to query i iff
// j <= i), with s_ij = scale * q_i . k_j:
//   a_ij  = relu(s_ij)                                          (adjacency relu)
//         = exp(s_ij - lse_i), lse_i = log sum_{j <= i} exp(s_ij)    (adjacency softmax)
//   a'_ij = threshold(a_ij) for j <= i and 0 for j > i, threshold one of
//             none            a
//             relu            max(a - tau, 0)
//             sharp_softplus  log1p(exp(beta (a - tau))) / beta, and a - tau where beta (a - tau)
//                             > 20 (torch.nn.functional.softplus with threshold 20)
//             sigmoid         1 / (1 + exp(-beta (a - tau)))
//             binary          1 where a > tau, else 0 (a step: no gradient flows through it)
//           (row-wise modes such as topk are not streamable: the model keeps the composite there)
// The moments (B, H, T, W), contiguous, blocks along the last axis in this order:
//   sum_i = sum_j a'_ij v_j                                           D channels
//   sq_i  = sum_j a'_ij v_j^2                                         D, if with_square
//   max_i = per channel, max of v_j over {j : a'_ij > 0}; 0 if empty  D, if with_max
//   min_i = likewise the minimum                                      D, if with_min
//   deg_i = sum_j a'_ij                                               1
// so W = D (1 + with_square + with_max + with_min) + 1 (PnaShape::width()). arg_max / arg_min:
// (B, H, T, D) int32 contiguous, the j attaining each extremum (the first among ties, as
// neighbour_max), -1 for a row without neighbours; null when the extremum is not asked for.
//
// Backward, from grad (B, H, T, W) contiguous (the blocks of the moments, g_sum, g_sq, g_max,
// g_min, g_deg):
//   g_a'_ij = g_sum_i . v_j + g_sq_i . v_j^2 + g_deg_i                 (j <= i)
//   g_a_ij  = g_a'_ij * threshold'(a_ij)    (0 for binary; relu' is [a > tau])
//   relu:    g_s_ij = g_a_ij [s_ij > 0]
//   softmax: g_s_ij = a_ij (g_a_ij - sum_{k <= i} a_ik g_a_ik)
//   grad_q_i = scale sum_j g_s_ij k_j,  grad_k_j = scale sum_i g_s_ij q_i,
//   grad_v_j = sum_i a'_ij (g_sum_i + 2 g_sq_i * v_j) + the g_max / g_min entries whose arg is j.
// The extrema give no gradient to the adjacency (the neighbourhood is piecewise constant in it).
//
// Operands: q, k, v (B, H, T, D) through their strides (as kernels/attention.h), D contiguous;
// grad_q, grad_k, grad_v likewise, each written whole (no accumulation into what was there).
// Dtypes: q, k, v and their gradients share one dtype (f32, f64; bf16 on the GPU). The moments,
// their gradient and lse are f64 for f64 and f32 otherwise (a bf16 sum of up to T products would
// lose the variance's cancellation). Results depend on the shapes alone, never on the thread count.
#pragma once

#include <cstdint>
#include <limits>

#include "core/error.h"
#include "kernels/attention.h"

namespace gradus::kernels {

enum class PnaAdjacency : int32_t { relu = 0, softmax = 1 };
enum class PnaThreshold : int32_t {
  none = 0,
  relu = 1,
  sharp_softplus = 2,
  sigmoid = 3,
  binary = 4
};

struct PnaShape {
  int64_t batch = 0, heads = 0, t = 0, head_dim = 0;
  double scale = 1.0;  // s = scale * q k^T (a softmax temperature is folded in here)
  PnaAdjacency adjacency = PnaAdjacency::relu;
  PnaThreshold threshold = PnaThreshold::none;
  double tau = 0.2, beta = 10.0;
  bool with_square = false, with_max = false, with_min = false;

  // Channels of one row of the moments.
  int64_t width() const {
    return head_dim * (1 + int64_t{with_square} + int64_t{with_max} + int64_t{with_min}) + 1;
  }
  // Offsets of the blocks within a row (valid when the block is present).
  int64_t square_offset() const { return head_dim; }
  int64_t max_offset() const { return head_dim * (1 + int64_t{with_square}); }
  int64_t min_offset() const { return head_dim * (1 + int64_t{with_square} + int64_t{with_max}); }
  int64_t degree_offset() const { return width() - 1; }
};

// q, k, v: (B, H, T, D) -> moments: (B, H, T, W) contiguous; arg_max, arg_min: (B, H, T, D) int32
// contiguous or null (then with_max / with_min must be false); lse: (B, H, T) contiguous, written
// for the softmax adjacency (may be null for relu).
using PnaForwardFn = void (*)(const PnaShape& s, AttentionOperand q, AttentionOperand k,
                              AttentionOperand v, void* moments, int32_t* arg_max, int32_t* arg_min,
                              void* lse);
// The saved forward (q, k, v, lse, arg_max, arg_min) and grad: (B, H, T, W) contiguous ->
// grad_q, grad_k, grad_v: (B, H, T, D).
using PnaBackwardFn = void (*)(const PnaShape& s, AttentionOperand q, AttentionOperand k,
                               AttentionOperand v, const void* lse, const int32_t* arg_max,
                               const int32_t* arg_min, const void* grad, AttentionOutput grad_q,
                               AttentionOutput grad_k, AttentionOutput grad_v);

// Every backend's check of the sizes and options, naming the kernel.
inline void check_pna_shape(const PnaShape& s, const char* kernel) {
  GRADUS_CHECK(s.batch >= 0 && s.heads >= 0 && s.t >= 0 && s.head_dim >= 1, kernel,
               "sizes (B, H, T, D) = ({}, {}, {}, {}) must be non-negative with D >= 1", s.batch,
               s.heads, s.t, s.head_dim);
  GRADUS_CHECK(s.t < std::numeric_limits<int32_t>::max(), kernel,
               "T = {} exceeds the int32 arg indices", s.t);
  GRADUS_CHECK(static_cast<int32_t>(s.adjacency) >= 0 && static_cast<int32_t>(s.adjacency) <= 1 &&
                   static_cast<int32_t>(s.threshold) >= 0 && static_cast<int32_t>(s.threshold) <= 4,
               kernel, "unknown adjacency {} or threshold {}", static_cast<int32_t>(s.adjacency),
               static_cast<int32_t>(s.threshold));
  GRADUS_CHECK(s.beta > 0, kernel, "beta must be positive, found {}", s.beta);
}

inline constexpr const char* kPnaForward = "pna_forward";
inline constexpr const char* kPnaBackward = "pna_backward";

}  // namespace gradus::kernels
