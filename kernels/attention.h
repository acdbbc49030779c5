// Fused scaled-dot-product attention, forward and backward, without the (Tq, Tk) score matrix in
// memory (flash-attention style: the softmax is rebuilt from its per-row log-sum-exp).
//
// Per (b, h), with S = scale * Q K^T masked (causal: key j is visible to query i iff
// j <= i + (Tk - Tq), i.e. the queries are the last Tq positions of the keys' sequence):
//   P   = softmax(S) along the keys,  out = P V,  lse[i] = log sum_j exp(S[i, j])
// and the backward, with delta[i] = sum_d grad_out[i, d] * out[i, d]:
//   dP = grad_out V^T,  dS = P * (dP - delta),  grad_q = scale * dS K,  grad_k = scale * dS^T Q,
//   grad_v = P^T grad_out.
// Shapes: q, out, grad_q, grad_out: (B, H, Tq, D); k, v, grad_k, grad_v: (B, H, Tk, D);
// lse, delta: (B, H, Tq) contiguous. Every (B, H, T, D) operand is addressed through its own
// strides for b, h and t (in elements) with the D channels contiguous, so the (B, T, H, D) storage
// of a projection split into heads is read and written as it is, never copied.
//
// Numerics: f32 and f64 compute in their type; bf16 loads convert to f32 and results round once
// on store. lse and delta are f64 for f64 and f32 otherwise (f32 for bf16: never rounded). A
// causal mask requires Tk >= Tq, so every row sees at least one key and no row is all -inf.
// Results depend on the shapes alone, never on the thread count.
#pragma once

#include <cstdint>

#include "core/error.h"

namespace gradus::kernels {

struct AttentionOperand {
  const void* data = nullptr;
  int64_t stride_b = 0, stride_h = 0, stride_t = 0;  // in elements; the D channels have stride 1
};
struct AttentionOutput {
  void* data = nullptr;
  int64_t stride_b = 0, stride_h = 0, stride_t = 0;
};

// Row 0 of head (b, h) of an operand or an output, typed.
template <class T>
const T* head_data(const AttentionOperand& x, int64_t b, int64_t h) {
  return static_cast<const T*>(x.data) + b * x.stride_b + h * x.stride_h;
}
template <class T>
T* head_data(const AttentionOutput& x, int64_t b, int64_t h) {
  return static_cast<T*>(x.data) + b * x.stride_b + h * x.stride_h;
}

struct AttentionShape {
  int64_t batch = 0, heads = 0, t_q = 0, t_k = 0, head_dim = 0;
  double scale = 1.0;  // applied to q k^T before the mask and the softmax
  bool causal = true;
};

// q: (B, H, Tq, D), k, v: (B, H, Tk, D) -> out: (B, H, Tq, D), lse: (B, H, Tq) contiguous.
using AttentionForwardFn = void (*)(const AttentionShape& s, AttentionOperand q, AttentionOperand k,
                                    AttentionOperand v, AttentionOutput out, void* lse);
// The saved forward (q, k, v, out, lse) and grad_out -> grad_q, grad_k, grad_v (each written
// whole: no accumulation into what was there). delta: (B, H, Tq) scratch the kernel fills.
using AttentionBackwardFn = void (*)(const AttentionShape& s, AttentionOperand q,
                                     AttentionOperand k, AttentionOperand v, AttentionOperand out,
                                     AttentionOperand grad_out, const void* lse, void* delta,
                                     AttentionOutput grad_q, AttentionOutput grad_k,
                                     AttentionOutput grad_v);

// Every backend's check of the sizes, naming the kernel: non-negative, Tk and D at least 1, and a
// causal mask with at least as many keys as queries.
inline void check_attention_shape(const AttentionShape& s, const char* kernel) {
  GRADUS_CHECK(
      s.batch >= 0 && s.heads >= 0 && s.t_q >= 0 && s.t_k >= 1 && s.head_dim >= 1, kernel,
      "sizes (B, H, Tq, Tk, D) = ({}, {}, {}, {}, {}) must be non-negative with Tk, D >= 1",
      s.batch, s.heads, s.t_q, s.t_k, s.head_dim);
  GRADUS_CHECK(!s.causal || s.t_k >= s.t_q, kernel,
               "a causal mask needs at least as many keys ({}) as queries ({})", s.t_k, s.t_q);
}

inline constexpr const char* kAttentionForward = "attention_forward";
inline constexpr const char* kAttentionBackward = "attention_backward";

}  // namespace gradus::kernels
