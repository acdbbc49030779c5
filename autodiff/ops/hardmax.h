// Hardmax self-attention (kernels/hardmax.h; models/hardmax/ and docs/hardmax.md): each token moves
// partway towards the mean of its highest-scoring tokens, ties averaged.
#pragma once

#include "core/tensor.h"

namespace gradus {

// Rank-1 scores (q . x_i)(k . x_j).
// x: (B, T, C); q, k: (C); alpha: () or (1) -> (B, T, C). lengths: (B) i64 in [1, T] (tokens at
// or beyond a sequence's length are padding: ignored and copied) or undefined (all T).
// Differentiable in x and alpha away from ties; q and k get zero gradients (the selection is
// piecewise constant in them).
Tensor hardmax_attention(const Tensor& x, const Tensor& q, const Tensor& k, const Tensor& alpha,
                         const Tensor& lengths = Tensor());
// General scores x_i . (A x_j). A: (C, C); A gets a zero gradient.
Tensor hardmax_attention_general(const Tensor& x, const Tensor& A, const Tensor& alpha,
                                 const Tensor& lengths = Tensor());

}  // namespace gradus
