// The language-model head and its loss in one op: cross_entropy(x W^T, targets) without the
// (rows, V) logits in memory. The composite keeps the logits for the cross-entropy's backward and
// materialises their gradient, two (rows, V) tensors (6.6 GB in f32 for 16 x 1024 tokens and a
// 50304-token vocabulary); this op runs the rows in chunks of about 2^24 logits and, when a
// gradient will be needed, computes each chunk's gradients in the forward (the loss is a scalar,
// so they are the forward's times the upstream gradient): it keeps only dL/dx (rows, C) and
// dL/dW (V, C) per unit of upstream gradient.
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace gradus {

// x: (..., C), weight: (V, C), targets: (...) i64, each in [0, V) or ignore_index
// -> the scalar cross_entropy(matmul(x, weight^T), targets, ignore_index, reduction), reduction
// "mean" (over the non-ignored targets; NaN when there are none, as PyTorch) or "sum". Equal to
// that composite up to the rounding of the chunked sums. Differentiable in x and weight. Under
// autocast, the product runs in the compute dtype and the loss in the wide one, as the composite
// would, and the gradients of x and weight arrive in their own dtypes straight from the products
// (an f32 weight's dW summed over the chunks in f32, never rounded to bf16). chunk_rows > 0 sets the rows per chunk (tests); 0 chooses max(1, 2^24 / V). The gradients
// are computed in the forward only when grad mode is on and x or weight requires a gradient.
Tensor linear_cross_entropy(const Tensor& x, const Tensor& weight, const Tensor& targets,
                            int64_t ignore_index = -100, const std::string& reduction = "mean",
                            int64_t chunk_rows = 0);

}  // namespace gradus
