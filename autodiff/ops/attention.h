// Fused scaled-dot-product attention (kernels/attention.h): softmax(scale * q k^T, masked) v in one
// op whose backward rebuilds the softmax from a saved per-row log-sum-exp, so neither the (Tq, Tk)
// scores nor the probabilities are kept for the backward (the composite matmul-softmax-matmul keeps
// the (B, H, Tq, Tk) probabilities of every layer).
#pragma once

#include <optional>

#include "core/tensor.h"

namespace gradus {

// q: (B, H, Tq, D), k, v: (B, H, Tk, D) -> (B, H, Tq, D), on one device, one float dtype.
// scale defaults to 1 / sqrt(D). causal: query i sees keys j <= i + (Tk - Tq) (needs Tk >= Tq).
// The result is a view of (B, Tq, H, D) storage, so merging the heads back to (B, Tq, H * D) is a
// reshape without a copy. Operands whose last stride is not 1 or whose rows are
// closer than D apart (broadcast along T) are made contiguous first.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    bool causal = true, std::optional<double> scale = {});

}  // namespace gradus
