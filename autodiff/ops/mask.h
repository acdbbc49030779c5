// Causal (autoregressive) attention masks: query position i may attend to key positions j <= i.
#pragma once

#include <cstdint>
#include <limits>

#include "core/tensor.h"

namespace gradus {

// (T, T) additive mask: 0 where j <= i (on and below the diagonal), -inf where j > i. Add it to
// attention scores before the softmax. A constant: records nothing and takes no gradient.
Tensor causal_mask(int64_t T, DType dtype = DType::f32, Device device = kCPU);

// scores: (..., T, T) -> (..., T, T) with the positions j > i replaced by `value` (default -inf).
// Differentiable: the gradient passes through where j <= i and is 0 at the masked positions.
Tensor causal_masked_fill(const Tensor& scores,
                          double value = -std::numeric_limits<double>::infinity());

}  // namespace gradus
